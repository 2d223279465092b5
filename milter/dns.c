/*
 * dns.c: one libunbound context per snapshot, shared by every thread.
 * Queries go out asynchronously; a thread of ours runs ub_process and
 * wakes the asking thread, which waits at most timeout_ms and then
 * cancels: a DNS server that never answers costs a bounded delay and gives
 * a temporary error, never a hang.
 *
 * Logs nothing: callers log the outcome with the queue id.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dns.h"
#include "util.h"

struct dns {
	struct ub_ctx *ctx;
	unsigned timeout_ms;
	pthread_t thread;
	int stop[2]; /* a byte on this pipe stops the thread */
	bool running;
	atomic_bool finalized; /* a first query went out */
};

/*
 * libunbound sets up process-wide locks when a context takes its first
 * query and destroys them when any context is deleted, behind plain flags
 * (listen_setup_locks, listen_desetup_locks). With a context per snapshot,
 * a reload's delete would race another context's first query: both are
 * done under this lock.
 */
static pthread_mutex_t dns_ub_lock = PTHREAD_MUTEX_INITIALIZER;

/* One query in flight; two owners (the asker and the callback). */
struct dns_q {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int err;
	struct ub_result *res;
	int refs;
};

static void
dns_q_unref(struct dns_q *q)
{
	int left;

	pthread_mutex_lock(&q->mu);
	left = --q->refs;
	pthread_mutex_unlock(&q->mu);
	if (left > 0)
		return;
	if (q->res != NULL)
		ub_resolve_free(q->res);
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
	free(q);
}

static void
dns_callback(void *arg, int err, struct ub_result *res)
{
	struct dns_q *q = arg;

	pthread_mutex_lock(&q->mu);
	q->err = err;
	q->res = res;
	q->done = true;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
	dns_q_unref(q);
}

static void *
dns_thread(void *arg)
{
	struct dns *d = arg;
	struct pollfd pfd[2];

	pfd[0].fd = ub_fd(d->ctx);
	pfd[0].events = POLLIN;
	pfd[1].fd = d->stop[0];
	pfd[1].events = POLLIN;
	for (;;) {
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		if (pfd[0].revents)
			ub_process(d->ctx);
	}
	return NULL;
}

/* Adds each "addr[@port]" of list as a forwarder. */
static int
dns_forwarders(struct ub_ctx *ctx, const char *list, char *err, size_t len)
{
	char *copy = xstrdup(list), *tok, *save = NULL;
	int rc = 0, n;

	for (tok = strtok_r(copy, " ,\t", &save); tok != NULL;
	     tok = strtok_r(NULL, " ,\t", &save))
		if ((n = ub_ctx_set_fwd(ctx, tok)) != 0) {
			snprintf(err, len, "Nameservers: %s: %s", tok,
				 ub_strerror(n));
			rc = -1;
			break;
		}
	free(copy);
	return rc;
}

int
dns_new(const char *nameservers, unsigned timeout_ms, struct dns **out,
	char *err, size_t errlen)
{
	struct dns *d = xcalloc(1, sizeof(*d));
	int n;

	*out = NULL;
	d->timeout_ms = timeout_ms;
	d->stop[0] = d->stop[1] = -1;
	pthread_mutex_lock(&dns_ub_lock);
	d->ctx = ub_ctx_create();
	pthread_mutex_unlock(&dns_ub_lock);
	if (d->ctx == NULL) {
		snprintf(err, errlen, "libunbound: cannot create a context");
		goto fail;
	}
	/* Threads, not processes; forwarders on loopback allowed. */
	if ((n = ub_ctx_async(d->ctx, 1)) != 0 ||
	    (n = ub_ctx_set_option(d->ctx, "do-not-query-localhost:", "no")) !=
		0) {
		snprintf(err, errlen, "libunbound: %s", ub_strerror(n));
		goto fail;
	}
	if (nameservers != NULL && *nameservers != '\0') {
		if (dns_forwarders(d->ctx, nameservers, err, errlen) < 0)
			goto fail;
	} else if ((n = ub_ctx_resolvconf(d->ctx, NULL)) != 0) {
		snprintf(err, errlen, "/etc/resolv.conf: %s", ub_strerror(n));
		goto fail;
	}
	if (pipe(d->stop) < 0) {
		snprintf(err, errlen, "dns: pipe: %s", strerror(errno));
		goto fail;
	}
	if (pthread_create(&d->thread, NULL, dns_thread, d) != 0) {
		snprintf(err, errlen, "dns: cannot start a thread");
		goto fail;
	}
	d->running = true;
	*out = d;
	return 0;
fail:
	dns_free(d);
	return -1;
}

void
dns_free(struct dns *d)
{
	if (d == NULL)
		return;
	if (d->running) {
		(void)!write(d->stop[1], "x", 1);
		pthread_join(d->thread, NULL);
	}
	if (d->stop[0] >= 0)
		close(d->stop[0]), close(d->stop[1]);
	if (d->ctx != NULL) {
		pthread_mutex_lock(&dns_ub_lock);
		ub_ctx_delete(d->ctx);
		pthread_mutex_unlock(&dns_ub_lock);
	}
	free(d);
}

/*
 * Is name a DNS name: labels of 1 to 63 octets, 253 octets in all (a
 * final dot aside)?
 */
static bool
dns_name_ok(const char *name)
{
	size_t len = strlen(name), label = 0;

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (name[i] != '.')
			label++;
		else if (label == 0)
			return false;
		else
			label = 0;
		if (label > 63)
			return false;
	}
	return label > 0;
}

enum dns_status
dns_query(struct dns *d, const char *name, int type, struct ub_result **res)
{
	struct dns_q *q;
	struct timespec until;
	enum dns_status st;
	bool done;
	int id, rc = 0;

	/*
	 * A name that is no DNS name (from a header or an envelope) can
	 * have no record, now or later: as NXDOMAIN (RFC 7208 4.3 says
	 * "none" for SPF), never a temporary error the sender would retry
	 * for ever.
	 */
	*res = NULL;
	if (!dns_name_ok(name))
		return DNS_NXDOMAIN;
	q = xcalloc(1, sizeof(*q));
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	q->refs = 2;
	if (atomic_load(&d->finalized))
		rc = ub_resolve_async(d->ctx, name, type, 1 /* IN */, q,
				      dns_callback, &id);
	else {
		pthread_mutex_lock(&dns_ub_lock);
		rc = ub_resolve_async(d->ctx, name, type, 1 /* IN */, q,
				      dns_callback, &id);
		if (rc == 0)
			atomic_store(&d->finalized, true);
		pthread_mutex_unlock(&dns_ub_lock);
	}
	if (rc != 0) {
		q->refs = 1;
		dns_q_unref(q);
		/* A name unbound cannot parse: as above. */
		return rc == UB_SYNTAX ? DNS_NXDOMAIN : DNS_TEMPFAIL;
	}

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += d->timeout_ms / 1000;
	until.tv_nsec += (long)(d->timeout_ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000)
		until.tv_sec++, until.tv_nsec -= 1000000000;
	pthread_mutex_lock(&q->mu);
	while (!q->done && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&q->cv, &q->mu, &until);
	done = q->done;
	pthread_mutex_unlock(&q->mu);

	/* Once done, the callback no longer writes q: read it freely. */
	if (!done) {
		/* Cancelled: the callback will not run, drop its share. */
		if (ub_cancel(d->ctx, id) == 0)
			dns_q_unref(q);
		dns_q_unref(q);
		return DNS_TEMPFAIL;
	}
	if (q->err != 0 || q->res == NULL)
		st = DNS_TEMPFAIL;
	else if (q->res->rcode == 2 /* SERVFAIL */)
		st = DNS_TEMPFAIL;
	else if (q->res->nxdomain || q->res->rcode == 3)
		st = DNS_NXDOMAIN;
	else if (q->res->rcode != 0)
		st = DNS_PERMFAIL;
	else if (!q->res->havedata)
		st = DNS_NODATA;
	else
		st = DNS_OK;
	if (st == DNS_OK) {
		*res = q->res;
		q->res = NULL;
	}
	dns_q_unref(q);
	return st;
}

const char *
dns_status_name(enum dns_status s)
{
	static const char *names[] = {"ok", "nodata", "nxdomain", "tempfail",
				      "permfail"};

	return names[s];
}

char *
dns_txt(const struct ub_result *res, int i)
{
	const unsigned char *p = (const unsigned char *)res->data[i];
	size_t len = (size_t)res->len[i], o = 0;
	char *out = xmalloc(len + 1);

	while (len > 0) {
		size_t n = p[0];

		if (n + 1 > len) {
			free(out);
			return NULL;
		}
		memcpy(out + o, p + 1, n);
		o += n;
		p += n + 1;
		len -= n + 1;
	}
	out[o] = '\0';
	return out;
}

int
dns_name(const unsigned char *p, size_t len, char *out, size_t outlen)
{
	size_t o = 0;

	while (len > 0 && *p != 0) {
		size_t n = *p;

		if (n > 63 || n + 1 > len || o + n + 2 > outlen)
			return -1;
		if (o > 0)
			out[o++] = '.';
		memcpy(out + o, p + 1, n);
		o += n;
		p += n + 1;
		len -= n + 1;
	}
	if (outlen == 0)
		return -1;
	out[o] = '\0';
	return 0;
}
