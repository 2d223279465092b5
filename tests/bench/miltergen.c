/*
 * miltergen.c: a load generator for one milter, speaking the milter
 * protocol (version 6) itself, without libmilter.
 *
 *   miltergen -s inet:PORT@HOST [-c CONNS] [-n MSGS | -t SECONDS]
 *             [-m MSGS-PER-CONN] [--ip ADDR] [--helo NAME] [--from ADDR]
 *             [--rcpt ADDR]... [-q] [-Q] LIST
 *
 * LIST names the message files, one path a line. Each file is read once,
 * split into headers (folded lines joined with a bare LF, as Postfix sends
 * them) and a CRLF body. CONNS threads each open a connection, negotiate
 * (offering every action and every protocol step, honouring the steps the
 * filter skips and the replies it will not send), and send messages in
 * turn from the list (CONNECT, HELO, then per message the macro i, MAIL,
 * RCPT, DATA, the headers, EOH, the body in chunks of at most 65535 bytes,
 * stopping at SKIP, then EOM), reading every modification reply up to the
 * final one. After MSGS-PER-CONN messages a connection is closed and a new
 * one opened. It stops after MSGS messages in all, or after SECONDS.
 * -q: no message per connection error. -Q: TCP_QUICKACK before every
 * read, so that the client's delayed ACK does not hold back a filter's
 * replies (Postfix does not do this; see docs/BENCHMARKS.md).
 *
 * It prints "key value" lines: messages, seconds, msgs_per_sec, the time
 * from sending EOM to the final reply (eom_p50_us, eom_p99_us,
 * eom_p999_us, eom_max_us), the count of each verdict, final_replies
 * (messages that got a verdict) and errors (messages cut short by a
 * protocol or connection error). Exit status 0 when every message got a
 * verdict, 1 otherwise, 2 for a usage error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Commands (MTA to filter). */
#define C_ABORT 'A'
#define C_BODY 'B'
#define C_CONNECT 'C'
#define C_MACRO 'D'
#define C_EOM 'E'
#define C_HELO 'H'
#define C_HEADER 'L'
#define C_MAIL 'M'
#define C_EOH 'N'
#define C_OPTNEG 'O'
#define C_QUIT 'Q'
#define C_RCPT 'R'
#define C_DATA 'T'

/* Replies (filter to MTA). */
#define R_ACCEPT 'a'
#define R_CONTINUE 'c'
#define R_DISCARD 'd'
#define R_PROGRESS 'p'
#define R_QUARANTINE 'q'
#define R_REJECT 'r'
#define R_SKIP 's'
#define R_TEMPFAIL 't'
#define R_REPLYCODE 'y'

/* Actions: all of them (SMFIF_ADDHDRS .. SMFIF_SETSYMLIST). */
#define F_ALL_ACTIONS 0x1ffUL

/* Protocol steps and no-reply flags (mfdef.h). */
#define P_NOCONNECT 0x1UL
#define P_NOHELO 0x2UL
#define P_NOMAIL 0x4UL
#define P_NORCPT 0x8UL
#define P_NOBODY 0x10UL
#define P_NOHDRS 0x20UL
#define P_NOEOH 0x40UL
#define P_NR_HDR 0x80UL
#define P_NODATA 0x200UL
#define P_SKIP 0x400UL
#define P_NR_CONN 0x1000UL
#define P_NR_HELO 0x2000UL
#define P_NR_MAIL 0x4000UL
#define P_NR_RCPT 0x8000UL
#define P_NR_DATA 0x10000UL
#define P_NR_EOH 0x40000UL
#define P_NR_BODY 0x80000UL
#define P_HDR_LEADSPC 0x100000UL
/* Every step and flag up to HDR_LEADSPC; not the larger data sizes. */
#define P_ALL 0x1fffffUL

#define MILTER_VERSION 6
#define MAX_CHUNK 65535
#define MAX_REPLY (1024 * 1024)

enum verdict {
	V_ACCEPT,
	V_QUARANTINE,
	V_REJECT,
	V_TEMPFAIL,
	V_DISCARD,
	V_COUNT
};
static const char *const verdict_names[V_COUNT] = {
    "accept", "quarantine", "reject", "tempfail", "discard"};

struct header {
	char *name;
	char *value; /* with its leading space, folds joined with LF */
};

struct message {
	char *path;
	struct header *hdrs;
	size_t nhdrs;
	char *body; /* CRLF line ends */
	size_t bodylen;
};

static struct message *corpus;
static size_t ncorpus;

/* Options. */
static struct sockaddr_in opt_addr;
static int opt_conns = 1;
static long opt_msgs = -1;
static double opt_secs = -1;
static int opt_per_conn = 100;
static const char *opt_ip = "192.0.2.10";
static const char *opt_helo = "mail.example.com";
static const char *opt_from = "<sender@example.com>";
static char **opt_rcpts;
static int opt_nrcpts;
static bool opt_quiet;
static bool opt_quickack;

/* Shared counters. */
static atomic_long next_msg;
static atomic_bool stop_now;

struct worker {
	pthread_t tid;
	int id;
	long *lat; /* microseconds, one per EOM answered */
	size_t nlat, caplat;
	long verdicts[V_COUNT];
	long done;   /* messages with a verdict */
	long errors; /* messages cut short */
	long connect_errors;
	unsigned long qid;
};

/* A connection's state. */
struct conn {
	int fd;
	unsigned long proto; /* what the filter returned */
	unsigned long actions;
	char *rbuf; /* one reply's data */
	size_t rcap;
	char *wbuf; /* one command being built */
	size_t wlen, wcap;
};

static void die(const char *what) __attribute__((noreturn));
static void usage(void) __attribute__((noreturn));

static void
die(const char *what)
{
	perror(what);
	exit(2);
}

static void *
xrealloc(void *p, size_t n)
{
	if ((p = realloc(p, n)) == NULL)
		die("realloc");
	return p;
}

static char *
xstrndup(const char *s, size_t n)
{
	char *d = xrealloc(NULL, n + 1);

	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long
elapsed_us(const struct timespec *a, const struct timespec *b)
{
	return (long)(b->tv_sec - a->tv_sec) * 1000000L +
	       (long)(b->tv_nsec - a->tv_nsec) / 1000L;
}

/*
 * Reads a message file: headers up to the first empty line (a first
 * "From " mbox line is dropped), the rest as the body with CRLF line ends.
 */
static int
load_message(struct message *m, const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL, *p, *end, *eol;
	size_t len = 0, cap = 0, n;
	size_t hcap = 0;

	if (f == NULL) {
		perror(path);
		return -1;
	}
	for (;;) {
		if (cap - len < 65536)
			buf = xrealloc(buf, cap = cap * 2 + 65536);
		if ((n = fread(buf + len, 1, cap - len - 1, f)) == 0)
			break;
		len += n;
	}
	fclose(f);
	buf[len] = '\0';
	memset(m, 0, sizeof(*m));
	m->path = strdup(path);
	p = buf;
	end = buf + len;
	if (len >= 5 && memcmp(p, "From ", 5) == 0)
		p = (eol = memchr(p, '\n', (size_t)(end - p))) ? eol + 1 : end;

	/* Headers. */
	while (p < end && *p != '\n' &&
	       !(*p == '\r' && p + 1 < end && p[1] == '\n')) {
		char *colon, *v, *val;
		size_t vlen = 0, vcap = 0;

		eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL)
			eol = end;
		colon = memchr(p, ':', (size_t)(eol - p));
		if (colon == NULL) { /* not a header: it starts the body */
			break;
		}
		if (m->nhdrs == hcap)
			m->hdrs = xrealloc(m->hdrs, (hcap = hcap * 2 + 16) *
							sizeof(*m->hdrs));
		m->hdrs[m->nhdrs].name = xstrndup(p, (size_t)(colon - p));
		val = NULL;
		v = colon + 1;
		for (;;) {
			size_t l = (size_t)(eol - v);

			if (l > 0 && v[l - 1] == '\r')
				l--;
			if (vlen + l + 2 > vcap)
				val = xrealloc(val, vcap = (vlen + l + 2) * 2);
			memcpy(val + vlen, v, l);
			vlen += l;
			p = eol < end ? eol + 1 : end;
			if (p >= end || (*p != ' ' && *p != '\t'))
				break;
			val[vlen++] = '\n'; /* a fold, as Postfix sends it */
			v = p;
			eol = memchr(p, '\n', (size_t)(end - p));
			if (eol == NULL)
				eol = end;
		}
		if (val == NULL)
			val = xrealloc(NULL, 1);
		val[vlen] = '\0';
		m->hdrs[m->nhdrs++].value = val;
	}
	/* The empty line. */
	if (p < end && *p == '\r')
		p++;
	if (p < end && *p == '\n')
		p++;

	/* The body, CRLF. */
	m->body = xrealloc(NULL, (size_t)(end - p) * 2 + 1);
	for (; p < end; p++) {
		if (*p == '\n' && (p == buf || p[-1] != '\r'))
			m->body[m->bodylen++] = '\r';
		m->body[m->bodylen++] = *p;
	}
	free(buf);
	return 0;
}

static int
load_list(const char *list)
{
	FILE *f = fopen(list, "r");
	char line[4096];
	size_t cap = 0;

	if (f == NULL) {
		perror(list);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		size_t l = strcspn(line, "\r\n");

		line[l] = '\0';
		if (l == 0 || line[0] == '#')
			continue;
		if (ncorpus == cap)
			corpus = xrealloc(corpus, (cap = cap * 2 + 64) *
						      sizeof(*corpus));
		if (load_message(&corpus[ncorpus], line) == 0)
			ncorpus++;
	}
	fclose(f);
	return ncorpus > 0 ? 0 : -1;
}

/* Building and sending commands. */

static void
cmd_start(struct conn *c, char cmd)
{
	c->wlen = 0;
	if (c->wcap < 5)
		c->wbuf = xrealloc(c->wbuf, c->wcap = 4096);
	c->wbuf[4] = cmd;
	c->wlen = 5;
}

static void
cmd_add(struct conn *c, const void *data, size_t len)
{
	if (c->wlen + len > c->wcap)
		c->wbuf = xrealloc(c->wbuf, c->wcap = (c->wlen + len) * 2);
	memcpy(c->wbuf + c->wlen, data, len);
	c->wlen += len;
}

static void
cmd_str(struct conn *c, const char *s)
{
	cmd_add(c, s, strlen(s) + 1);
}

static void
cmd_u32(struct conn *c, uint32_t v)
{
	uint32_t n = htonl(v);

	cmd_add(c, &n, 4);
}

static int
write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
cmd_send(struct conn *c)
{
	uint32_t n = htonl((uint32_t)(c->wlen - 4));

	memcpy(c->wbuf, &n, 4);
	return write_all(c->fd, c->wbuf, c->wlen);
}

static int
read_all(int fd, char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = recv(fd, p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads one reply: returns its command, the data in c->rbuf; -1 on error. */
static int
reply_read(struct conn *c, size_t *lenp)
{
	uint32_t n;
	size_t len;
	char cmd;
	int one = 1;

	/* Acknowledge at once what comes: without it, a filter that writes
	 * several small replies without TCP_NODELAY waits for our delayed
	 * ACK (Nagle) before the next one. */
	if (opt_quickack)
		setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
	if (read_all(c->fd, (char *)&n, 4) < 0)
		return -1;
	len = ntohl(n);
	if (len < 1 || len > MAX_REPLY)
		return -1;
	if (read_all(c->fd, &cmd, 1) < 0)
		return -1;
	len--;
	if (len + 1 > c->rcap)
		c->rbuf = xrealloc(c->rbuf, c->rcap = len + 1);
	if (len > 0 && read_all(c->fd, c->rbuf, len) < 0)
		return -1;
	c->rbuf[len] = '\0';
	if (lenp != NULL)
		*lenp = len;
	return (unsigned char)cmd;
}

/*
 * Reads the answer to one step: CONTINUE, SKIP, or a verdict. Returns
 * the reply command (PROGRESS is skipped), -1 on error.
 */
static int
step_reply(struct conn *c)
{
	int r;

	while ((r = reply_read(c, NULL)) == R_PROGRESS)
		;
	return r;
}

/* The verdict of a final reply; -1 when it is not one. */
static int
reply_verdict(int r, const char *data, bool quarantined)
{
	switch (r) {
	case R_ACCEPT:
	case R_CONTINUE:
		return quarantined ? V_QUARANTINE : V_ACCEPT;
	case R_REJECT:
		return V_REJECT;
	case R_TEMPFAIL:
		return V_TEMPFAIL;
	case R_DISCARD:
		return V_DISCARD;
	case R_REPLYCODE:
		return data[0] == '4' ? V_TEMPFAIL : V_REJECT;
	default:
		return -1;
	}
}

/* Sends a step and, unless the filter said it will not, reads the reply. */
static int
step(struct conn *c, unsigned long nr)
{
	if (cmd_send(c) < 0)
		return -1;
	if (c->proto & nr)
		return R_CONTINUE;
	return step_reply(c);
}

static int
send_macro(struct conn *c, char for_cmd, const char *name, const char *val)
{
	cmd_start(c, C_MACRO);
	cmd_add(c, &for_cmd, 1);
	cmd_str(c, name);
	cmd_str(c, val);
	return cmd_send(c);
}

/* Negotiation, CONNECT and HELO. Returns 0, 1 when refused, -1 on error. */
static int
conn_open(struct conn *c)
{
	uint32_t v[3];
	size_t len;
	int r, one = 1;
	struct timeval tv = {.tv_sec = 60};

	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0)
		return -1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(c->fd, (struct sockaddr *)&opt_addr, sizeof(opt_addr)) < 0)
		return -1;

	cmd_start(c, C_OPTNEG);
	cmd_u32(c, MILTER_VERSION);
	cmd_u32(c, F_ALL_ACTIONS);
	cmd_u32(c, P_ALL);
	if (cmd_send(c) < 0)
		return -1;
	if ((r = reply_read(c, &len)) != C_OPTNEG || len < 12)
		return -1;
	memcpy(v, c->rbuf, 12);
	c->actions = ntohl(v[1]);
	c->proto = ntohl(v[2]);
	/* The macro lists it asks for (after the 12 bytes) are ignored: we
	 * send i at MAIL and EOM and j at CONNECT whatever it asks. */

	if (!(c->proto & P_NOCONNECT)) {
		struct in_addr a;
		uint16_t port = htons(25);
		char fam = '4';

		if (send_macro(c, C_CONNECT, "j", "mx.bench.example") < 0)
			return -1;
		if (inet_pton(AF_INET, opt_ip, &a) != 1)
			fam = '6';
		cmd_start(c, C_CONNECT);
		cmd_str(c, opt_helo);
		cmd_add(c, &fam, 1);
		cmd_add(c, &port, 2);
		cmd_str(c, opt_ip);
		if ((r = step(c, P_NR_CONN)) < 0)
			return -1;
		if (r != R_CONTINUE)
			return 1;
	}
	if (!(c->proto & P_NOHELO)) {
		cmd_start(c, C_HELO);
		cmd_str(c, opt_helo);
		if ((r = step(c, P_NR_HELO)) < 0)
			return -1;
		if (r != R_CONTINUE)
			return 1;
	}
	return 0;
}

static void
conn_close(struct conn *c, bool quit)
{
	if (c->fd < 0)
		return;
	if (quit) {
		cmd_start(c, C_QUIT);
		(void)cmd_send(c);
	}
	close(c->fd);
	c->fd = -1;
}

static void
add_latency(struct worker *w, long us)
{
	if (w->nlat == w->caplat)
		w->lat = xrealloc(w->lat, (w->caplat = w->caplat * 2 + 4096) *
					      sizeof(*w->lat));
	w->lat[w->nlat++] = us;
}

/*
 * One message. Returns its verdict (>= 0), -1 on a connection or protocol
 * error.
 */
static int
send_message(struct worker *w, struct conn *c, const struct message *m)
{
	char qid[32];
	int r, v, accepted_rcpts = 0;
	bool quarantined = false;
	struct timespec t0, t1;
	size_t len;

	snprintf(qid, sizeof(qid), "B%02X%08lX", (unsigned)w->id, ++w->qid);

	if (!(c->proto & P_NOMAIL)) {
		if (send_macro(c, C_MAIL, "i", qid) < 0)
			return -1;
		cmd_start(c, C_MAIL);
		cmd_str(c, opt_from);
		if ((r = step(c, P_NR_MAIL)) < 0)
			return -1;
		if (r != R_CONTINUE)
			goto early;
	}
	for (int i = 0; i < opt_nrcpts; i++) {
		if (c->proto & P_NORCPT) {
			accepted_rcpts++;
			continue;
		}
		cmd_start(c, C_RCPT);
		cmd_str(c, opt_rcpts[i]);
		if ((r = step(c, P_NR_RCPT)) < 0)
			return -1;
		if (r == R_CONTINUE)
			accepted_rcpts++;
		else if (r != R_REJECT && r != R_TEMPFAIL && r != R_REPLYCODE)
			goto early; /* accept or discard: the whole message */
	}
	if (accepted_rcpts == 0) {
		/* Every recipient refused: the message ends here. */
		goto early;
	}
	if (!(c->proto & P_NODATA)) {
		cmd_start(c, C_DATA);
		if ((r = step(c, P_NR_DATA)) < 0)
			return -1;
		if (r != R_CONTINUE)
			goto early;
	}
	if (!(c->proto & P_NOHDRS)) {
		for (size_t i = 0; i < m->nhdrs; i++) {
			const char *val = m->hdrs[i].value;

			if (!(c->proto & P_HDR_LEADSPC))
				while (*val == ' ' || *val == '\t')
					val++;
			cmd_start(c, C_HEADER);
			cmd_str(c, m->hdrs[i].name);
			cmd_str(c, val);
			if ((r = step(c, P_NR_HDR)) < 0)
				return -1;
			if (r != R_CONTINUE)
				goto early;
		}
	}
	if (!(c->proto & P_NOEOH)) {
		cmd_start(c, C_EOH);
		if ((r = step(c, P_NR_EOH)) < 0)
			return -1;
		if (r != R_CONTINUE)
			goto early;
	}
	if (!(c->proto & P_NOBODY)) {
		for (size_t off = 0; off < m->bodylen;) {
			size_t n = m->bodylen - off;

			if (n > MAX_CHUNK)
				n = MAX_CHUNK;
			cmd_start(c, C_BODY);
			cmd_add(c, m->body + off, n);
			off += n;
			if ((r = step(c, P_NR_BODY)) < 0)
				return -1;
			if (r == R_SKIP)
				break;
			if (r != R_CONTINUE)
				goto early;
		}
	}

	if (send_macro(c, C_EOM, "i", qid) < 0)
		return -1;
	cmd_start(c, C_EOM);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (cmd_send(c) < 0)
		return -1;
	for (;;) {
		if ((r = reply_read(c, &len)) < 0)
			return -1;
		if (r == R_QUARANTINE)
			quarantined = true;
		if ((v = reply_verdict(r, c->rbuf, quarantined)) >= 0)
			break;
		/* A modification (header, recipient, body) or progress. */
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	add_latency(w, elapsed_us(&t0, &t1));
	return v;

early:
	/* A verdict before the end of the message: the MTA aborts it. */
	v = reply_verdict(r, c->rbuf, false);
	if (v < 0 || v == V_ACCEPT) /* accept now: no more steps needed */
		v = v < 0 ? V_REJECT : V_ACCEPT;
	cmd_start(c, C_ABORT);
	if (cmd_send(c) < 0)
		return -1;
	return v;
}

/* The next message index, or -1 when the run is over. */
static long
take_message(void)
{
	long i;

	if (atomic_load(&stop_now))
		return -1;
	i = atomic_fetch_add(&next_msg, 1);
	if (opt_msgs >= 0 && i >= opt_msgs)
		return -1;
	return i;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct conn c = {.fd = -1};
	long i;
	int sent = 0, v, rc;

	while ((i = take_message()) >= 0) {
		const struct message *m = &corpus[(size_t)i % ncorpus];

		if (c.fd < 0) {
			sent = 0;
			rc = conn_open(&c);
			if (rc != 0) {
				conn_close(&c, false);
				if (rc < 0) {
					w->connect_errors++;
					w->errors++;
					usleep(10000);
				} else {
					/* Refused at CONNECT or HELO. */
					w->verdicts[V_REJECT]++;
					w->done++;
				}
				continue;
			}
		}
		v = send_message(w, &c, m);
		if (v < 0) {
			if (!opt_quiet)
				fprintf(stderr,
					"miltergen: %s: connection error\n",
					m->path);
			w->errors++;
			conn_close(&c, false);
			continue;
		}
		w->verdicts[v]++;
		w->done++;
		if (++sent >= opt_per_conn)
			conn_close(&c, true);
	}
	conn_close(&c, true);
	free(c.rbuf);
	free(c.wbuf);
	return NULL;
}

static int
cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return (x > y) - (x < y);
}

static long
percentile(const long *v, size_t n, double p)
{
	size_t k;

	if (n == 0)
		return 0;
	k = (size_t)(p * (double)n);
	if (k >= n)
		k = n - 1;
	return v[k];
}

static void
usage(void)
{
	fprintf(stderr,
		"usage: miltergen -s inet:PORT@HOST [-c CONNS] [-n MSGS | -t "
		"SECONDS]\n"
		"                 [-m MSGS-PER-CONN] [--ip ADDR] [--helo NAME] "
		"[--from ADDR]\n"
		"                 [--rcpt ADDR]... [-q] [-Q] LIST\n");
	exit(2);
}

static void
parse_socket(const char *s)
{
	const char *at;
	char port[16];
	size_t n;

	if (strncmp(s, "inet:", 5) != 0 || (at = strchr(s, '@')) == NULL)
		usage();
	n = (size_t)(at - (s + 5));
	if (n == 0 || n >= sizeof(port))
		usage();
	memcpy(port, s + 5, n);
	port[n] = '\0';
	opt_addr.sin_family = AF_INET;
	opt_addr.sin_port = htons((uint16_t)atoi(port));
	if (inet_pton(AF_INET, at + 1, &opt_addr.sin_addr) != 1)
		usage();
}

/* An address in angle brackets, as MAIL and RCPT carry it. */
static char *
bracket(const char *a)
{
	size_t n = strlen(a) + 3;
	char *s = xrealloc(NULL, n);

	if (a[0] == '<')
		snprintf(s, n, "%s", a);
	else
		snprintf(s, n, "<%s>", a);
	return s;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"ip", required_argument, NULL, 'I'},
	    {"helo", required_argument, NULL, 'H'},
	    {"from", required_argument, NULL, 'F'},
	    {"rcpt", required_argument, NULL, 'R'},
	    {NULL, 0, NULL, 0}};
	struct worker *ws;
	long total_done = 0, errors = 0, conn_errors = 0;
	long verdicts[V_COUNT] = {0};
	long *lat;
	size_t nlat = 0;
	double t0, t1, secs;
	bool have_sock = false;
	struct rusage ru0, ru;
	int ch;

	while ((ch = getopt_long(argc, argv, "s:c:n:t:m:qQ", longopts, NULL)) !=
	       -1) {
		switch (ch) {
		case 's':
			parse_socket(optarg);
			have_sock = true;
			break;
		case 'c':
			opt_conns = atoi(optarg);
			break;
		case 'n':
			opt_msgs = atol(optarg);
			break;
		case 't':
			opt_secs = atof(optarg);
			break;
		case 'm':
			opt_per_conn = atoi(optarg);
			break;
		case 'q':
			opt_quiet = true;
			break;
		case 'Q':
			opt_quickack = true;
			break;
		case 'I':
			opt_ip = optarg;
			break;
		case 'H':
			opt_helo = optarg;
			break;
		case 'F':
			opt_from = bracket(optarg);
			break;
		case 'R':
			opt_rcpts =
			    xrealloc(opt_rcpts, (size_t)(opt_nrcpts + 1) *
						    sizeof(*opt_rcpts));
			opt_rcpts[opt_nrcpts++] = bracket(optarg);
			break;
		default:
			usage();
		}
	}
	if (!have_sock || optind != argc - 1 || opt_conns < 1 ||
	    opt_per_conn < 1 || (opt_msgs < 0 && opt_secs <= 0))
		usage();
	if (opt_nrcpts == 0) {
		opt_rcpts = xrealloc(NULL, sizeof(*opt_rcpts));
		opt_rcpts[opt_nrcpts++] = bracket("rcpt@example.net");
	}
	if (load_list(argv[optind]) < 0) {
		fprintf(stderr, "miltergen: no message in %s\n", argv[optind]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);

	ws = calloc((size_t)opt_conns, sizeof(*ws));
	if (ws == NULL)
		die("calloc");
	getrusage(RUSAGE_SELF, &ru0);
	t0 = now_s();
	for (int i = 0; i < opt_conns; i++) {
		ws[i].id = i;
		if (pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]) != 0)
			die("pthread_create");
	}
	if (opt_secs > 0) {
		while (now_s() - t0 < opt_secs) {
			bool all_done =
			    opt_msgs >= 0 && atomic_load(&next_msg) >= opt_msgs;

			if (all_done)
				break;
			usleep(20000);
		}
		atomic_store(&stop_now, true);
	}
	for (int i = 0; i < opt_conns; i++)
		pthread_join(ws[i].tid, NULL);
	t1 = now_s();
	secs = t1 - t0;

	for (int i = 0; i < opt_conns; i++)
		nlat += ws[i].nlat;
	lat = xrealloc(NULL, (nlat + 1) * sizeof(*lat));
	nlat = 0;
	for (int i = 0; i < opt_conns; i++) {
		if (ws[i].nlat > 0)
			memcpy(lat + nlat, ws[i].lat,
			       ws[i].nlat * sizeof(*lat));
		nlat += ws[i].nlat;
		total_done += ws[i].done;
		errors += ws[i].errors;
		conn_errors += ws[i].connect_errors;
		for (int v = 0; v < V_COUNT; v++)
			verdicts[v] += ws[i].verdicts[v];
	}
	qsort(lat, nlat, sizeof(*lat), cmp_long);

	printf("corpus %zu\n", ncorpus);
	printf("connections %d\n", opt_conns);
	printf("messages %ld\n", total_done + errors);
	printf("final_replies %ld\n", total_done);
	printf("errors %ld\n", errors);
	printf("connect_errors %ld\n", conn_errors);
	printf("seconds %.3f\n", secs);
	printf("msgs_per_sec %.1f\n", secs > 0 ? (double)total_done / secs : 0);
	printf("eom_replies %zu\n", nlat);
	printf("eom_p50_us %ld\n", percentile(lat, nlat, 0.50));
	printf("eom_p99_us %ld\n", percentile(lat, nlat, 0.99));
	printf("eom_p999_us %ld\n", percentile(lat, nlat, 0.999));
	printf("eom_max_us %ld\n", nlat ? lat[nlat - 1] : 0L);
	for (int v = 0; v < V_COUNT; v++)
		printf("verdict_%s %ld\n", verdict_names[v], verdicts[v]);
	/* Our own CPU time during the run: the share of the machine the
	 * load itself takes. */
	getrusage(RUSAGE_SELF, &ru);
	printf("gen_cpu_s %.3f\n",
	       (double)(ru.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
		   (double)(ru.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
		   (double)(ru.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
		   (double)(ru.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6);
	for (int i = 0; i < opt_conns; i++)
		free(ws[i].lat);
	free(ws);
	free(lat);
	return errors == 0 ? 0 : 1;
}
