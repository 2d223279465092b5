/*
 * pipe.h: the checks, in one pass over one message, and the verdict.
 */
#ifndef PIPE_H
#define PIPE_H

#include "av.h"
#include "msg.h"
#include "snap.h"
#include "verdict.h"

struct pipe_report {
	struct av_result av;
	struct verdict verdict;
	unsigned ms;
};

/* Runs every check on m under snapshot s and decides. */
void pipe_run(const struct snap *s, struct msg *m, struct pipe_report *r);
void pipe_report_free(struct pipe_report *r);
/* The one summary line of a message, at info level. */
void pipe_log(const struct msg *m, const struct pipe_report *r);

#endif
