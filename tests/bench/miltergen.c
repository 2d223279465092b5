/*
 * miltergen.c: a load generator for one milter, or for a chain of milters
 * called the way Postfix calls them, speaking the milter protocol
 * (version 6) itself, without libmilter.
 *
 *   miltergen -s SOCKET [-s SOCKET]... [-c CONNS] [-n MSGS | -t SECONDS]
 *             [-m MSGS-PER-CONN] [--ip ADDR] [--helo NAME] [--from ADDR]
 *             [--rcpt ADDR]... [--verdicts FILE] [-q] [-Q] LIST
 *
 * SOCKET is inet:PORT@HOST, unix:PATH or local:PATH. LIST names the
 * message files, one path a line. Each file is read once, split into
 * headers (folded lines joined with a bare LF, as Postfix sends them) and
 * a CRLF body. CONNS threads each open a connection, negotiate (offering
 * every action and every protocol step, honouring the steps the filter
 * skips and the replies it will not send), and send messages in turn from
 * the list (CONNECT, HELO, then per message the macro i, MAIL, RCPT, DATA,
 * the headers, EOH, the body in chunks of at most 65535 bytes, stopping at
 * SKIP, then EOM), reading every modification reply up to the final one.
 * After MSGS-PER-CONN messages a connection is closed and a new one
 * opened. It stops after MSGS messages in all, or after SECONDS.
 * -q: no message per connection error. -Q: TCP_QUICKACK before every
 * read, so that the client's delayed ACK does not hold back a filter's
 * replies (Postfix does not do this; see docs/BENCHMARKS.md).
 *
 * With several -s, each thread holds one connection to each milter, and
 * does what Postfix's milter client does: each SMTP event (CONNECT, HELO,
 * MAIL, RCPT, DATA) goes to each milter in order and stops at the first
 * refusal (a recipient refused by one milter is not shown to the next); a
 * milter that accepts is not called again for the message (or the
 * connection, at CONNECT and HELO). At the end of the message the whole
 * content (headers, EOH, body, EOM) goes to the first milter, then to the
 * second, and so on, each seeing the header changes of the ones before it
 * (added, inserted, changed and deleted headers; a body replacement is
 * not applied). The first milter whose answer is not a plain accept (a
 * reject, tempfail, discard, or a quarantine, which Postfix also treats
 * as final) decides the message and the others do not see it; an early
 * refusal ends the message with ABORT. The latency is measured from the
 * first EOM sent to the last final reply.
 *
 * It prints "key value" lines: messages, seconds, msgs_per_sec, the time
 * from sending EOM to the final reply (eom_p50_us, eom_p99_us,
 * eom_p999_us, eom_max_us), the count of each verdict, final_replies
 * (messages that got a verdict) and errors (messages cut short by a
 * protocol or connection error); with a chain, milters (their count)
 * too. --verdicts FILE writes one line per message answered: the message
 * file's path, its verdict, and what decided it (milterN/STAGE and the
 * SMTP reply, or "-" when accepted), separated by tabs. Exit status 0
 * when every message got a verdict, 1 otherwise, 2 for a usage error.
 *
 * For robustness tests, --abort-pct N ends N% of the messages with ABORT
 * instead of EOM (the client went away after its data, as the MTA tells
 * a filter), and --drop-pct N closes the connection in the middle of N%
 * of the messages (half the body sent, then half a command); the choice
 * depends on the message's number only. A message cut so gets no verdict:
 * the output then has "aborted" and "dropped" counts, and messages counts
 * them too.
 *
 * --rate R paces the run in an open loop: message number i starts R
 * messages per second after the start (or at once when late), whatever
 * the replies, as mail arrives at an MX; the latencies then show the
 * filter below its saturation.
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
#include <sys/un.h>
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
#define R_ADDHEADER 'h'
#define R_INSHEADER 'i'
#define R_CHGHEADER 'm'
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
#define MAX_MILTERS 8

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

/* A milter's socket. */
struct sockspec {
	const char *spec;
	struct sockaddr_storage addr;
	socklen_t len;
	bool inet;
};

/* Options. */
static struct sockspec opt_socks[MAX_MILTERS];
static int opt_nsocks;
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
static FILE *opt_verdicts;
static pthread_mutex_t verdicts_lock = PTHREAD_MUTEX_INITIALIZER;
static int opt_abort_pct, opt_drop_pct;
/* --rate: messages per second in all, each one started at its time. */
static double opt_rate, rate_t0;

/* --abort-pct, --drop-pct: what ends this thread's current message. */
enum cut { CUT_NONE, CUT_ABORT, CUT_DROP };
static _Thread_local enum cut msg_cut, msg_cut_done;

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
	long aborted, dropped; /* cut on purpose */
	unsigned long qid;
};

/* A connection's state. */
struct conn {
	int fd;
	bool inet;
	bool conn_done;	     /* accepted the connection: no more events */
	bool msg_done;	     /* accepted the message: no more events */
	bool in_msg;	     /* has seen MAIL and no EOM or ABORT yet */
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
	if (opt_quickack && c->inet)
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

/* The connections of one thread: one per milter, in chain order. */
struct chain {
	struct conn c[MAX_MILTERS];
	bool open;
};

/* The headers of a message as the next milter will see them. */
struct hdrlist {
	struct header *h;
	bool *own; /* name and value allocated here */
	size_t n, cap;
};

/* What decided a message. */
struct outcome {
	int verdict;
	int milter; /* its index, -1 when no milter refused */
	const char *stage;
	char reply[160];
};

/* Connects and negotiates. Returns 0, -1 on error. */
static int
conn_negotiate(struct conn *c, const struct sockspec *sp)
{
	uint32_t v[3];
	size_t len;
	int one = 1;
	struct timeval tv = {.tv_sec = 60};

	c->inet = sp->inet;
	c->conn_done = c->msg_done = c->in_msg = false;
	c->fd = socket(sp->addr.ss_family, SOCK_STREAM, 0);
	if (c->fd < 0)
		return -1;
	if (c->inet)
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(c->fd, (const struct sockaddr *)&sp->addr, sp->len) < 0)
		return -1;

	cmd_start(c, C_OPTNEG);
	cmd_u32(c, MILTER_VERSION);
	cmd_u32(c, F_ALL_ACTIONS);
	cmd_u32(c, P_ALL);
	if (cmd_send(c) < 0)
		return -1;
	if (reply_read(c, &len) != C_OPTNEG || len < 12)
		return -1;
	memcpy(v, c->rbuf, 12);
	c->actions = ntohl(v[1]);
	c->proto = ntohl(v[2]);
	/* The macro lists it asks for (after the 12 bytes) are ignored: we
	 * send i at MAIL and EOM and j at CONNECT whatever it asks. */
	return 0;
}

/*
 * Sends the command built in c at CONNECT or HELO. Returns the reply,
 * R_CONTINUE when the filter sends none, -1 on error; an accept means no
 * more events from this milter for the whole connection.
 */
static int
conn_event(struct conn *c, unsigned long nr)
{
	int r = step(c, nr);

	if (r == R_ACCEPT) {
		c->conn_done = true;
		r = R_CONTINUE;
	}
	return r;
}

/*
 * Negotiation, then CONNECT and HELO to each milter in turn. Returns 0, 1
 * when refused, -1 on error.
 */
static int
chain_open(struct chain *ch)
{
	struct in_addr a;
	uint16_t port = htons(25);
	char fam = inet_pton(AF_INET, opt_ip, &a) == 1 ? '4' : '6';
	int k, r;

	for (k = 0; k < opt_nsocks; k++)
		ch->c[k].fd = -1;
	ch->open = true;
	for (k = 0; k < opt_nsocks; k++)
		if (conn_negotiate(&ch->c[k], &opt_socks[k]) < 0)
			return -1;

	for (k = 0; k < opt_nsocks; k++) {
		struct conn *c = &ch->c[k];

		if (c->proto & P_NOCONNECT)
			continue;
		if (send_macro(c, C_CONNECT, "j", "mx.bench.example") < 0)
			return -1;
		cmd_start(c, C_CONNECT);
		cmd_str(c, opt_helo);
		cmd_add(c, &fam, 1);
		cmd_add(c, &port, 2);
		cmd_str(c, opt_ip);
		if ((r = conn_event(c, P_NR_CONN)) < 0)
			return -1;
		if (r != R_CONTINUE)
			return 1;
	}
	for (k = 0; k < opt_nsocks; k++) {
		struct conn *c = &ch->c[k];

		if (c->conn_done || (c->proto & P_NOHELO))
			continue;
		cmd_start(c, C_HELO);
		cmd_str(c, opt_helo);
		if ((r = conn_event(c, P_NR_HELO)) < 0)
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
chain_close(struct chain *ch, bool quit)
{
	if (!ch->open)
		return;
	for (int k = 0; k < opt_nsocks; k++)
		conn_close(&ch->c[k], quit);
	ch->open = false;
}

static void
add_latency(struct worker *w, long us)
{
	if (w->nlat == w->caplat)
		w->lat = xrealloc(w->lat, (w->caplat = w->caplat * 2 + 4096) *
					      sizeof(*w->lat));
	w->lat[w->nlat++] = us;
}

/* Header changes, for the milters further down a chain. */

static void
hl_free_at(struct hdrlist *hl, size_t i)
{
	if (hl->own[i]) {
		free(hl->h[i].name);
		free(hl->h[i].value);
	}
}

/* The list as the message file gives it. */
static void
hl_reset(struct hdrlist *hl, const struct message *m)
{
	for (size_t i = 0; i < hl->n; i++)
		hl_free_at(hl, i);
	if (hl->cap < m->nhdrs + 1) {
		hl->cap = m->nhdrs + 16;
		hl->h = xrealloc(hl->h, hl->cap * sizeof(*hl->h));
		hl->own = xrealloc(hl->own, hl->cap * sizeof(*hl->own));
	}
	if (m->nhdrs > 0)
		memcpy(hl->h, m->hdrs, m->nhdrs * sizeof(*hl->h));
	memset(hl->own, 0, m->nhdrs * sizeof(*hl->own));
	hl->n = m->nhdrs;
}

/* A value as stored: with its leading space, which Postfix adds for a
 * milter that did not negotiate SMFIP_HDR_LEADSPC. */
static char *
hl_value(const struct conn *c, const char *v)
{
	size_t n = strlen(v);
	char *s = xrealloc(NULL, n + 2);

	if (c->proto & P_HDR_LEADSPC) {
		memcpy(s, v, n + 1);
	} else {
		s[0] = ' ';
		memcpy(s + 1, v, n + 1);
	}
	return s;
}

static void
hl_insert(struct hdrlist *hl, size_t at, char *name, char *value)
{
	if (at > hl->n)
		at = hl->n;
	if (hl->n == hl->cap) {
		hl->cap = hl->cap * 2 + 16;
		hl->h = xrealloc(hl->h, hl->cap * sizeof(*hl->h));
		hl->own = xrealloc(hl->own, hl->cap * sizeof(*hl->own));
	}
	memmove(hl->h + at + 1, hl->h + at, (hl->n - at) * sizeof(*hl->h));
	memmove(hl->own + at + 1, hl->own + at,
		(hl->n - at) * sizeof(*hl->own));
	hl->h[at].name = name;
	hl->h[at].value = value;
	hl->own[at] = true;
	hl->n++;
}

/* The index-th header called name (from 1) changed, or deleted when the
 * value is empty; a missing one is added. */
static void
hl_change(struct hdrlist *hl, const struct conn *c, uint32_t index,
	  const char *name, const char *value)
{
	uint32_t seen = 0;
	size_t i;
	char *nn;

	if (index == 0)
		index = 1;
	for (i = 0; i < hl->n; i++)
		if (strcasecmp(hl->h[i].name, name) == 0 && ++seen == index)
			break;
	if (i == hl->n) {
		if (value[0] != '\0')
			hl_insert(hl, hl->n, xstrndup(name, strlen(name)),
				  hl_value(c, value));
		return;
	}
	if (value[0] == '\0') {
		hl_free_at(hl, i);
		memmove(hl->h + i, hl->h + i + 1,
			(hl->n - i - 1) * sizeof(*hl->h));
		memmove(hl->own + i, hl->own + i + 1,
			(hl->n - i - 1) * sizeof(*hl->own));
		hl->n--;
		return;
	}
	nn = xstrndup(hl->h[i].name, strlen(hl->h[i].name));
	hl_free_at(hl, i);
	hl->h[i].name = nn;
	hl->h[i].value = hl_value(c, value);
	hl->own[i] = true;
}

/*
 * Applies one modification reply (data, len) to the list: add, insert,
 * change or delete a header. Others (recipients, body) are not applied.
 */
static void
hl_edit(struct hdrlist *hl, const struct conn *c, int r, const char *data,
	size_t len)
{
	uint32_t index = 0;
	const char *name, *value, *end = data + len;

	if (r != R_ADDHEADER && r != R_INSHEADER && r != R_CHGHEADER)
		return;
	if (r != R_ADDHEADER) {
		if (len < 4)
			return;
		memcpy(&index, data, 4);
		index = ntohl(index);
		data += 4;
	}
	name = data;
	if ((value = memchr(name, '\0', (size_t)(end - name))) == NULL)
		return;
	value++;
	if (value >= end || memchr(value, '\0', (size_t)(end - value)) == NULL)
		return;
	if (r == R_CHGHEADER)
		hl_change(hl, c, index, name, value);
	else
		hl_insert(hl, r == R_ADDHEADER ? hl->n : index,
			  xstrndup(name, strlen(name)), hl_value(c, value));
}

/* Records what decided the message: milter k at a stage, reply r. */
static void
outcome_set(struct outcome *o, int k, const char *stage, int r,
	    const struct conn *c)
{
	int v = reply_verdict(r, c->rbuf, false);

	o->verdict = v < 0 ? V_REJECT : v;
	o->milter = k;
	o->stage = stage;
	if (r == R_REPLYCODE)
		snprintf(o->reply, sizeof(o->reply), "%s", c->rbuf);
	else
		snprintf(o->reply, sizeof(o->reply), "%s",
			 v < 0 ? "unexpected-reply" : verdict_names[v]);
	o->reply[strcspn(o->reply, "\r\n\t")] = '\0';
}

/*
 * One envelope or DATA event to each milter in turn, as built by build.
 * Returns 0 when every milter went on, 1 when one decided (o set), -1 on
 * error.
 */
static int
chain_event(struct chain *ch, unsigned long no_step, unsigned long nr,
	    const char *stage, void (*build)(struct conn *, const void *),
	    const void *arg, struct outcome *o)
{
	for (int k = 0; k < opt_nsocks; k++) {
		struct conn *c = &ch->c[k];
		int r;

		if (c->conn_done || c->msg_done || (c->proto & no_step))
			continue;
		build(c, arg);
		if ((r = step(c, nr)) < 0)
			return -1;
		if (r == R_CONTINUE)
			continue;
		if (r == R_ACCEPT) { /* no more events of this message */
			c->msg_done = true;
			continue;
		}
		outcome_set(o, k, stage, r, c);
		return 1;
	}
	return 0;
}

static void
build_mail(struct conn *c, const void *arg)
{
	(void)arg;
	cmd_start(c, C_MAIL);
	cmd_str(c, opt_from);
}

static void
build_rcpt(struct conn *c, const void *arg)
{
	cmd_start(c, C_RCPT);
	cmd_str(c, arg);
}

static void
build_data(struct conn *c, const void *arg)
{
	(void)arg;
	cmd_start(c, C_DATA);
}

/* Whether some milter still takes part in the message. */
static bool
chain_active(const struct chain *ch)
{
	for (int k = 0; k < opt_nsocks; k++)
		if (!ch->c[k].conn_done && !ch->c[k].msg_done)
			return true;
	return false;
}

/*
 * MAIL, RCPT and DATA through the chain. Returns 0 when the content is
 * to be sent, 1 when the message ended here (o set), -1 on error.
 */
static int
chain_envelope(struct chain *ch, const char *qid, struct outcome *o)
{
	int r, accepted_rcpts = 0;

	for (int k = 0; k < opt_nsocks; k++) {
		struct conn *c = &ch->c[k];

		c->msg_done = false;
		c->in_msg = !c->conn_done;
		if (c->conn_done || (c->proto & P_NOMAIL))
			continue;
		if (send_macro(c, C_MAIL, "i", qid) < 0)
			return -1;
	}
	r = chain_event(ch, P_NOMAIL, P_NR_MAIL, "mail", build_mail, NULL, o);
	if (r != 0)
		return r;

	for (int i = 0; i < opt_nrcpts; i++) {
		struct outcome ro = *o;

		r = chain_event(ch, P_NORCPT, P_NR_RCPT, "rcpt", build_rcpt,
				opt_rcpts[i], &ro);
		if (r < 0)
			return -1;
		if (r == 0) {
			accepted_rcpts++;
			continue;
		}
		*o = ro; /* refused: this recipient only, unless discarded */
		if (ro.verdict == V_DISCARD)
			return 1;
	}
	if (accepted_rcpts == 0)
		return 1; /* every recipient refused: the message ends */
	o->verdict = V_ACCEPT;
	o->milter = -1;
	return chain_event(ch, P_NODATA, P_NR_DATA, "data", build_data, NULL,
			   o);
}

/*
 * The content (headers, EOH, body, EOM) to milter k. Returns 0 when it
 * accepts, 1 when it decided (o set), -1 on error. *t0 is set at the
 * first EOM sent.
 */
static int
content_send(struct chain *ch, int k, const struct message *m,
	     struct hdrlist *hl, const char *qid, struct outcome *o,
	     struct timespec *t0)
{
	struct conn *c = &ch->c[k];
	const struct header *hdrs = opt_nsocks > 1 ? hl->h : m->hdrs;
	size_t nhdrs = opt_nsocks > 1 ? hl->n : m->nhdrs, len;
	bool quarantined = false;
	int r, v;

	if (!(c->proto & P_NOHDRS)) {
		for (size_t i = 0; i < nhdrs; i++) {
			const char *val = hdrs[i].value;

			if (!(c->proto & P_HDR_LEADSPC))
				while (*val == ' ' || *val == '\t')
					val++;
			cmd_start(c, C_HEADER);
			cmd_str(c, hdrs[i].name);
			cmd_str(c, val);
			if ((r = step(c, P_NR_HDR)) < 0)
				return -1;
			if (r == R_ACCEPT)
				goto accepted;
			if (r != R_CONTINUE)
				goto decided;
		}
	}
	if (!(c->proto & P_NOEOH)) {
		cmd_start(c, C_EOH);
		if ((r = step(c, P_NR_EOH)) < 0)
			return -1;
		if (r == R_ACCEPT)
			goto accepted;
		if (r != R_CONTINUE)
			goto decided;
	}
	if (!(c->proto & P_NOBODY)) {
		size_t end = msg_cut == CUT_DROP ? m->bodylen / 2 : m->bodylen;

		for (size_t off = 0; off < end;) {
			size_t n = end - off;

			if (n > MAX_CHUNK)
				n = MAX_CHUNK;
			cmd_start(c, C_BODY);
			cmd_add(c, m->body + off, n);
			off += n;
			if ((r = step(c, P_NR_BODY)) < 0)
				return -1;
			if (r == R_SKIP)
				break;
			if (r == R_ACCEPT)
				goto accepted;
			if (r != R_CONTINUE)
				goto decided;
		}
	}

	if (msg_cut == CUT_DROP) {
		/* Half a BODY command, then the connection goes. */
		cmd_start(c, C_BODY);
		cmd_add(c, "cut here\r\n", 10);
		memcpy(c->wbuf, "\0\0\x04\0", 4); /* says 1024 bytes */
		(void)write_all(c->fd, c->wbuf, c->wlen);
		msg_cut_done = CUT_DROP;
		return -1;
	}
	if (msg_cut == CUT_ABORT) {
		msg_cut_done = CUT_ABORT; /* send_message sends ABORT */
		return 2;
	}
	if (send_macro(c, C_EOM, "i", qid) < 0)
		return -1;
	cmd_start(c, C_EOM);
	if (t0->tv_sec == 0 && t0->tv_nsec == 0)
		clock_gettime(CLOCK_MONOTONIC, t0);
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
		if (opt_nsocks > 1)
			hl_edit(hl, c, r, c->rbuf, len);
	}
	c->in_msg = false;
	if (v == V_ACCEPT)
		return 0;
	outcome_set(o, k, "eom", r, c);
	if (v == V_QUARANTINE) {
		o->verdict = V_QUARANTINE;
		snprintf(o->reply, sizeof(o->reply), "quarantine");
	}
	return 1;

accepted:
	/* Accepted before the end: no EOM for this milter. */
	c->msg_done = true;
	return 0;
decided:
	outcome_set(o, k, "content", r, c);
	return 1;
}

/* Ends the message for the milters still inside it. */
static int
chain_abort(struct chain *ch)
{
	for (int k = 0; k < opt_nsocks; k++) {
		struct conn *c = &ch->c[k];

		if (!c->in_msg)
			continue;
		c->in_msg = false;
		cmd_start(c, C_ABORT);
		if (cmd_send(c) < 0)
			return -1;
	}
	return 0;
}

/*
 * One message through the chain. Returns 0 with its outcome in o, -1 on
 * a connection or protocol error.
 */
static int
send_message(struct worker *w, struct chain *ch, struct hdrlist *hl,
	     const struct message *m, struct outcome *o)
{
	char qid[32];
	struct timespec t0 = {0}, t1;
	int r;

	snprintf(qid, sizeof(qid), "B%02X%08lX", (unsigned)w->id, ++w->qid);
	o->verdict = V_ACCEPT;
	o->milter = -1;
	o->stage = "-";
	o->reply[0] = '\0';

	if ((r = chain_envelope(ch, qid, o)) < 0)
		return -1;
	if (r == 0 && chain_active(ch)) {
		if (opt_nsocks > 1)
			hl_reset(hl, m);
		for (int k = 0; k < opt_nsocks; k++) {
			struct conn *c = &ch->c[k];

			if (c->conn_done || c->msg_done)
				continue;
			if ((r = content_send(ch, k, m, hl, qid, o, &t0)) < 0)
				return -1;
			if (r == 1 || r == 2) /* decided, or aborted */
				break;
		}
		if (t0.tv_sec != 0 || t0.tv_nsec != 0) {
			clock_gettime(CLOCK_MONOTONIC, &t1);
			add_latency(w, elapsed_us(&t0, &t1));
		}
	}
	/* A verdict before the end of the message, or a milter that
	 * accepted it early: the MTA aborts it there. */
	return chain_abort(ch);
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
	if (opt_rate > 0) {
		/* Open loop: message i starts at rate_t0 + i / rate. */
		double wait = rate_t0 + (double)i / opt_rate - now_s();

		while (wait > 0 && !atomic_load(&stop_now)) {
			usleep(wait > 0.05 ? 50000 : (useconds_t)(wait * 1e6));
			wait = rate_t0 + (double)i / opt_rate - now_s();
		}
		if (atomic_load(&stop_now))
			return -1;
	}
	return i;
}

/* Whether message number i is to be cut, by a hash of i. */
static enum cut
cut_pick(long i)
{
	int p = (int)(((unsigned long)i * 2654435761UL >> 8) % 100);

	if (p < opt_drop_pct)
		return CUT_DROP;
	if (p < opt_drop_pct + opt_abort_pct)
		return CUT_ABORT;
	return CUT_NONE;
}

/* One line of --verdicts: path, verdict, what decided it. */
static void
verdict_write(const char *path, const struct outcome *o)
{
	if (opt_verdicts == NULL)
		return;
	pthread_mutex_lock(&verdicts_lock);
	if (o->milter < 0)
		fprintf(opt_verdicts, "%s\t%s\t-\n", path,
			verdict_names[o->verdict]);
	else
		fprintf(opt_verdicts, "%s\t%s\tmilter%d/%s %s\n", path,
			verdict_names[o->verdict], o->milter + 1, o->stage,
			o->reply);
	pthread_mutex_unlock(&verdicts_lock);
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct chain ch = {.open = false};
	struct hdrlist hl = {0};
	struct outcome o;
	long i;
	int sent = 0, rc;

	while ((i = take_message()) >= 0) {
		const struct message *m = &corpus[(size_t)i % ncorpus];

		if (!ch.open) {
			sent = 0;
			rc = chain_open(&ch);
			if (rc != 0) {
				chain_close(&ch, false);
				if (rc < 0) {
					w->connect_errors++;
					w->errors++;
					usleep(10000);
					continue;
				}
				/* Refused at CONNECT or HELO. */
				w->verdicts[V_REJECT]++;
				w->done++;
				o.verdict = V_REJECT;
				o.milter = 0;
				o.stage = "connect";
				snprintf(o.reply, sizeof(o.reply), "refused");
				verdict_write(m->path, &o);
				continue;
			}
		}
		msg_cut = cut_pick(i);
		msg_cut_done = CUT_NONE;
		if (send_message(w, &ch, &hl, m, &o) < 0) {
			if (msg_cut_done == CUT_DROP) {
				w->dropped++;
				chain_close(&ch, false);
				continue;
			}
			if (!opt_quiet)
				fprintf(stderr,
					"miltergen: %s: connection error\n",
					m->path);
			w->errors++;
			chain_close(&ch, false);
			continue;
		}
		if (msg_cut_done == CUT_ABORT)
			w->aborted++;
		else {
			w->verdicts[o.verdict]++;
			w->done++;
			verdict_write(m->path, &o);
		}
		if (++sent >= opt_per_conn)
			chain_close(&ch, true);
	}
	chain_close(&ch, true);
	for (int k = 0; k < MAX_MILTERS; k++) {
		free(ch.c[k].rbuf);
		free(ch.c[k].wbuf);
	}
	for (size_t j = 0; j < hl.n; j++)
		hl_free_at(&hl, j);
	free(hl.h);
	free(hl.own);
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
	fprintf(
	    stderr,
	    "usage: miltergen -s SOCKET [-s SOCKET]... [-c CONNS] "
	    "[-n MSGS | -t SECONDS]\n"
	    "                 [-m MSGS-PER-CONN] [--ip ADDR] [--helo NAME] "
	    "[--from ADDR]\n"
	    "                 [--rcpt ADDR]... [--verdicts FILE] [-q] [-Q] "
	    "LIST\n"
	    "                 [--abort-pct N] [--drop-pct N] [--rate MSGS/S]\n"
	    "SOCKET: inet:PORT@HOST, unix:PATH or local:PATH\n");
	exit(2);
}

/* One more milter of the chain: inet:PORT@HOST, unix:PATH, local:PATH. */
static void
parse_socket(const char *s)
{
	struct sockspec *sp;
	const char *at;
	char port[16];
	size_t n;

	if (opt_nsocks == MAX_MILTERS) {
		fprintf(stderr, "miltergen: at most %d milters\n", MAX_MILTERS);
		exit(2);
	}
	sp = &opt_socks[opt_nsocks++];
	sp->spec = s;
	if (strncmp(s, "unix:", 5) == 0 || strncmp(s, "local:", 6) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)&sp->addr;
		const char *path = strchr(s, ':') + 1;

		if (path[0] == '\0' || strlen(path) >= sizeof(un->sun_path))
			usage();
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, path, strlen(path) + 1);
		sp->len = sizeof(*un);
		sp->inet = false;
		return;
	}
	if (strncmp(s, "inet:", 5) != 0 || (at = strchr(s, '@')) == NULL)
		usage();
	n = (size_t)(at - (s + 5));
	if (n == 0 || n >= sizeof(port))
		usage();
	memcpy(port, s + 5, n);
	port[n] = '\0';
	{
		struct sockaddr_in *in = (struct sockaddr_in *)&sp->addr;

		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)atoi(port));
		if (inet_pton(AF_INET, at + 1, &in->sin_addr) != 1)
			usage();
		sp->len = sizeof(*in);
	}
	sp->inet = true;
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
	    {"verdicts", required_argument, NULL, 'V'},
	    {"abort-pct", required_argument, NULL, 'a'},
	    {"drop-pct", required_argument, NULL, 'd'},
	    {"rate", required_argument, NULL, 'r'},
	    {NULL, 0, NULL, 0}};
	struct worker *ws;
	long total_done = 0, errors = 0, conn_errors = 0, aborted = 0,
	     dropped = 0;
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
		case 'a':
			opt_abort_pct = atoi(optarg);
			break;
		case 'd':
			opt_drop_pct = atoi(optarg);
			break;
		case 'r':
			opt_rate = atof(optarg);
			break;
		case 'V':
			if ((opt_verdicts = fopen(optarg, "w")) == NULL)
				die(optarg);
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
	    opt_per_conn < 1 || (opt_msgs < 0 && opt_secs <= 0) ||
	    opt_abort_pct < 0 || opt_drop_pct < 0 ||
	    opt_abort_pct + opt_drop_pct > 100 || opt_rate < 0)
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
	t0 = rate_t0 = now_s();
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
		aborted += ws[i].aborted;
		dropped += ws[i].dropped;
		for (int v = 0; v < V_COUNT; v++)
			verdicts[v] += ws[i].verdicts[v];
	}
	qsort(lat, nlat, sizeof(*lat), cmp_long);

	printf("corpus %zu\n", ncorpus);
	if (opt_nsocks > 1)
		printf("milters %d\n", opt_nsocks);
	printf("connections %d\n", opt_conns);
	printf("messages %ld\n", total_done + errors + aborted + dropped);
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
	if (opt_abort_pct > 0 || opt_drop_pct > 0) {
		printf("aborted %ld\n", aborted);
		printf("dropped %ld\n", dropped);
	}
	/* Our own CPU time during the run: the share of the machine the
	 * load itself takes. */
	getrusage(RUSAGE_SELF, &ru);
	printf("gen_cpu_s %.3f\n",
	       (double)(ru.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
		   (double)(ru.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
		   (double)(ru.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
		   (double)(ru.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6);
	if (opt_verdicts != NULL && fclose(opt_verdicts) != 0)
		die("--verdicts");
	for (int i = 0; i < opt_conns; i++)
		free(ws[i].lat);
	free(ws);
	free(lat);
	return errors == 0 ? 0 : 1;
}
