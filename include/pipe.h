/*
 * pipe.h: the checks, in one pass over one message, and the verdict.
 */
#ifndef PIPE_H
#define PIPE_H

#include <stdbool.h>

#include "av.h"
#include "dkimv.h"
#include "dmarc.h"
#include "msg.h"
#include "snap.h"
#include "spf.h"
#include "verdict.h"

struct pipe_report {
	struct av_result av;

	/* Sender authentication; spf and dmarc only when auth_checked. */
	bool auth_on;	   /* AuthChecks yes: DKIM ran, a header is made */
	bool auth_checked; /* SPF and DMARC ran */
	char auth_skipped[160];
	struct spf_check spf_helo;
	struct spf_check spf_mail;
	struct dkimv_report dkim;
	struct dmarc_check dmarc;
	struct buf authres; /* the Authentication-Results value */
	unsigned auth_ms;

	struct verdict verdict;
	unsigned ms;
};

/* Runs every check on m under snapshot s and decides. */
void pipe_run(const struct snap *s, struct msg *m, struct pipe_report *r);
void pipe_report_free(struct pipe_report *r);
/* The one summary line of a message, at info level. */
void pipe_log(const struct msg *m, const struct pipe_report *r);

#endif
