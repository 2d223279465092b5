/*
 * snap.c: the current snapshot of configuration and engines. One mutex
 * guards the pointer and the reference counts; it is held for a few
 * instructions per connection, never during a scan or a load.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmarc.h"
#include "log.h"
#include "snap.h"

/*
 * The resolver and the SPF, DKIM and DMARC engines of a conf. Errors are
 * config errors: the snapshot is not taken.
 */
static int
snap_auth(struct snap *s, struct errlist *errs)
{
	static pthread_mutex_t once = PTHREAD_MUTEX_INITIALIZER;
	static bool dmarc_ready;
	const struct conf *c = s->conf;
	char err[512];
	int rc = 0;

	if (!c->auth_checks)
		return 0;

	/* XXX the public suffix list is read once: a reload keeps it. */
	pthread_mutex_lock(&once);
	if (!dmarc_ready) {
		if (dmarc_global_init(c->public_suffix_list, err,
				      sizeof(err)) == 0)
			dmarc_ready = true;
		else
			rc = -1;
	}
	pthread_mutex_unlock(&once);
	if (rc == 0 && dns_new(c->nameservers, (unsigned)c->dns_timeout,
			       &s->dns, err, sizeof(err)) < 0)
		rc = -1;
	if (rc == 0 &&
	    spf_new(s->dns, c->hostname, &s->spf, err, sizeof(err)) < 0)
		rc = -1;
	if (rc == 0 && dkimv_new(s->dns, (unsigned)c->min_key_bits,
				 (unsigned)c->max_signatures, &s->dkim, err,
				 sizeof(err)) < 0)
		rc = -1;
	if (rc < 0)
		errlist_add(errs, "%s: %s", c->path, err);
	return rc;
}

static pthread_mutex_t snap_lock = PTHREAD_MUTEX_INITIALIZER;
static struct snap *snap_current;

static void
snap_destroy(struct snap *s)
{
	rules_free(s->rules);
	dkimv_free(s->dkim);
	spf_free(s->spf);
	dns_free(s->dns);
	av_unref(s->av);
	conf_free(s->conf);
	free(s);
}

int
snap_build(const char *path, struct av_engine *keep_av, struct snap **out,
	   struct errlist *errs)
{
	struct snap *s = xcalloc(1, sizeof(*s));
	char err[sizeof(s->av_error)] = "";

	*out = NULL;
	if (path == NULL)
		s->conf = conf_defaults();
	else if (conf_load(path, &s->conf, errs) < 0) {
		free(s);
		return -1;
	}
	if (snap_auth(s, errs) < 0 ||
	    (s->conf->rules_path[0] != '\0' &&
	     rules_load(s->conf->rules_path, &s->rules, errs) < 0)) {
		snap_destroy(s);
		return -1;
	}
	if (av_load(s->conf, &s->av, err, sizeof(err)) < 0) {
		if (keep_av != NULL) {
			log_msg(LOG_ERR, "%s; keeping the running database",
				err);
			s->av = av_ref(keep_av);
		} else {
			snprintf(s->av_error, sizeof(s->av_error), "%s", err);
		}
	}
	s->refs = 1;
	*out = s;
	return 0;
}

void
snap_install(struct snap *s)
{
	struct snap *old;

	pthread_mutex_lock(&snap_lock);
	old = snap_current;
	snap_current = s;
	pthread_mutex_unlock(&snap_lock);
	if (old != NULL)
		snap_put(old);
}

struct snap *
snap_get(void)
{
	struct snap *s;

	pthread_mutex_lock(&snap_lock);
	if ((s = snap_current) != NULL)
		s->refs++;
	pthread_mutex_unlock(&snap_lock);
	return s;
}

void
snap_put(struct snap *s)
{
	int left;

	if (s == NULL)
		return;
	pthread_mutex_lock(&snap_lock);
	left = --s->refs;
	pthread_mutex_unlock(&snap_lock);
	if (left == 0)
		snap_destroy(s);
}
