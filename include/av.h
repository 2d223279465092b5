/*
 * av.h: virus scanning with libclamav: one compiled engine, shared by every
 * thread and reference-counted so that a reload can swap it under load.
 */
#ifndef AV_H
#define AV_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"

enum av_status {
	AV_CLEAN,
	AV_INFECTED,
	AV_ERROR,
};

/* Why a scan gave AV_ERROR: each has its own action in the config. */
enum av_failure {
	AVF_NONE,
	AVF_NO_ENGINE, /* no database loaded */
	AVF_ERROR,     /* libclamav or the temporary directory failed */
	AVF_TIMEOUT,   /* ClamAVMaxScanTime */
	AVF_LIMIT,     /* a size, file or recursion limit of libclamav */
	AVF_OVERSIZE,  /* the message is over MaxMessageSize */
	AVF_INTERNAL,  /* the message could not be assembled */
};

struct av_result {
	enum av_status status;
	enum av_failure failure; /* with AV_ERROR */
	char name[256];		 /* signature name, when infected */
	char error[512];
	unsigned ms;
};

struct av_engine;

/* Once per process, before any engine. */
int av_global_init(char *err, size_t errlen);
/*
 * Loads and compiles the database named by the conf, with its limits and
 * a private temporary directory under TemporaryDirectory.
 */
int av_load(const struct conf *c, struct av_engine **out, char *err,
	    size_t errlen);
struct av_engine *av_ref(struct av_engine *e);
void av_unref(struct av_engine *e);
unsigned av_signatures(const struct av_engine *e);
/* Scans len bytes at p (a whole message) with e, which may be NULL. */
void av_scan(struct av_engine *e, const char *p, size_t len,
	     struct av_result *r);
const char *av_status_name(enum av_status s);
/* At exit: the temporary folders of engines still held by connections. */
void av_exit(void);
/* Is this file name one libclamav loads from a database folder? */
bool av_is_db_name(const char *name);
/* Does the folder hold such a file? (true when it cannot be read) */
bool av_has_db_file(const char *dir);
#define AV_NO_DB_FILE                                                          \
	"no database file in it (run freshclam, or add .cvd/.cld/.ndb/.hdb "   \
	"files)"

/*
 * The database folder as a load found it, to tell on an interval whether
 * it changed since (ClamAVCheckInterval, as clamd's SelfCheck).
 */
struct av_watch;

/* Notes the state of dir now; a folder that cannot be read is noted so. */
struct av_watch *av_watch_new(const char *dir);
/*
 * 1 when a database file was added, changed or removed since, or the
 * folder appeared or went; else 0.
 */
int av_watch_changed(const struct av_watch *w);
const char *av_watch_dir(const struct av_watch *w);
void av_watch_free(struct av_watch *w);

#endif
