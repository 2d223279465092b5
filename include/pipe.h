/*
 * pipe.h: the checks, in one pass over one message, and the verdict.
 */
#ifndef PIPE_H
#define PIPE_H

#include <stdbool.h>

#include "av.h"
#include "dkimv.h"
#include "dmarc.h"
#include "mime.h"
#include "msg.h"
#include "rules.h"
#include "snap.h"
#include "spf.h"
#include "verdict.h"

/*
 * The kinds of failure that leave a check undone; each has its key in the
 * config (OnNoEngine, ...) saying what becomes of the message.
 */
enum pipe_fb {
	FB_NO_ENGINE,
	FB_SCAN_ERROR,
	FB_SCAN_TIMEOUT,
	FB_SCAN_LIMIT,
	FB_OVERSIZE,
	FB_INTERNAL,
	FB_DNS_TEMP,
	FB_DNS_PERM,
	FB_MIME_LIMIT,
	FB_HEADER_LIMIT,
	FB_RCPT_LIMIT,
};

#define PIPE_MAX_FB 8

struct pipe_fallback {
	enum pipe_fb kind;
	enum action action;
	char detail[300];
};

struct pipe_report {
	struct av_result av;

	/* What could not be checked, and the action each one took. */
	struct pipe_fallback fb[PIPE_MAX_FB];
	size_t nfb;

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

	/* Rules: the decoded message and the outcome of every stage. */
	bool rules_on;
	struct mime_result mime;
	struct rules_outcome rules;
	const char *rules_stage; /* where a decisive rule was decided */
	unsigned rules_ms;

	struct verdict verdict;
	const char *subject_tag; /* the tag the verdict puts on the Subject */
	unsigned ms;
};

/*
 * The rules' state of one SMTP session, kept by the milter front end:
 * what CONNECT and HELO decided for the connection, and what MAIL and
 * RCPT decided for the message under way.
 */
struct pipe_session {
	struct rules_outcome conn;
	struct rules_outcome msg;
};

void pipe_session_free(struct pipe_session *ps);
/* At MAIL: the message starts from what the connection decided. */
void pipe_session_mail(struct pipe_session *ps);

/*
 * The rules of one SMTP stage before end of DATA, for the milter front
 * end. At RCPT, rcpt is the recipient being added and nothing persists
 * but a refusal of that recipient. Returns what to answer now: ACT_ACCEPT
 * to go on, ACT_REJECT or ACT_TEMPFAIL (reply in v), or ACT_DISCARD.
 */
enum action pipe_early(const struct snap *s, const struct msg *m,
		       struct pipe_session *ps, enum rules_stage stage,
		       const char *rcpt, struct verdict *v);

/*
 * Runs every check on m under snapshot s and decides. ps holds what the
 * rules decided before end of DATA; NULL (the offline scanner) runs the
 * rules of every stage here.
 */
void pipe_run(const struct snap *s, struct msg *m, struct pipe_session *ps,
	      struct pipe_report *r);
void pipe_report_free(struct pipe_report *r);
/* The config key, the check and the name of a kind of failure. */
const char *pipe_fb_key(enum pipe_fb kind);
const char *pipe_fb_name(enum pipe_fb kind);
enum action pipe_fb_action(const struct conf *c, enum pipe_fb kind);
/*
 * A recipient past MaxRecipients, at RCPT: ACT_ACCEPT to take it (the end
 * of DATA then applies OnRecipientLimit's accept or quarantine), or the
 * refusal (reply in v).
 */
enum action pipe_rcpt_limit(const struct conf *c, const struct msg *m,
			    const char *rcpt, struct verdict *v);
/* The one summary line of a message, at info level. */
void pipe_log(const struct msg *m, const struct pipe_report *r);

#endif
