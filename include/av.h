/*
 * av.h: virus scanning with libclamav: one compiled engine, shared by every
 * thread and reference-counted so that a reload can swap it under load.
 */
#ifndef AV_H
#define AV_H

#include <stddef.h>

#include "conf.h"

enum av_status {
	AV_CLEAN,
	AV_INFECTED,
	AV_ERROR,
};

struct av_result {
	enum av_status status;
	char name[256]; /* signature name, when infected */
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

#endif
