/*
 * snap.h: the running configuration as one snapshot: the conf and the
 * ClamAV engine (later the rules). A connection holds the snapshot it
 * started with; a reload builds a new one and swaps one pointer.
 */
#ifndef SNAP_H
#define SNAP_H

#include "av.h"
#include "conf.h"
#include "dkimv.h"
#include "dns.h"
#include "rules.h"
#include "spf.h"

struct snap {
	struct conf *conf;
	struct av_engine *av; /* NULL when no database could be loaded */
	char av_error[400];   /* why av is NULL */
	struct dns *dns;      /* the resolver; NULL with AuthChecks no */
	struct spf *spf;
	struct dkimv *dkim;
	struct rules *rules; /* NULL without RulesPath */
	int refs;
};

/*
 * Builds a snapshot from the config file; a database that does not load
 * leaves av NULL (messages then get OnScanError), unless keep_av is given,
 * which is then kept instead. Config errors go to errs and return -1.
 */
int snap_build(const char *path, struct av_engine *keep_av, struct snap **out,
	       struct errlist *errs);
/* Makes s the current snapshot; the previous one dies with its last user. */
void snap_install(struct snap *s);
/* The current snapshot, with a reference for the caller. */
struct snap *snap_get(void);
void snap_put(struct snap *s);

#endif
