/*
 * snap.c: the current snapshot of configuration and engines. One mutex
 * guards the pointer and the reference counts; it is held for a few
 * instructions per connection, never during a scan or a load.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "snap.h"

static pthread_mutex_t snap_lock = PTHREAD_MUTEX_INITIALIZER;
static struct snap *snap_current;

int
snap_build(const char *path, struct av_engine *keep_av, struct snap **out,
	   struct errlist *errs)
{
	struct snap *s = xcalloc(1, sizeof(*s));
	char err[512] = "";

	*out = NULL;
	if (path == NULL)
		s->conf = conf_defaults();
	else if (conf_load(path, &s->conf, errs) < 0) {
		free(s);
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

static void
snap_destroy(struct snap *s)
{
	av_unref(s->av);
	conf_free(s->conf);
	free(s);
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
