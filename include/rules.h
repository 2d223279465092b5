/*
 * rules.h: the admins' rules language (see edmilter.rules(5)): rules over
 * the envelope, headers, decoded body and attachments, with actions and
 * scores, decided at the earliest SMTP stage whose data they need.
 */
#ifndef RULES_H
#define RULES_H

#include <stdbool.h>
#include <stddef.h>

#include "mime.h"
#include "msg.h"
#include "util.h"
#include "verdict.h"

/* SMTP stages, in order; a rule is decided at the latest one it needs. */
enum rules_stage {
	RULES_CONNECT,
	RULES_HELO,
	RULES_MAIL,
	RULES_RCPT,
	RULES_EOM,
};

/* What a rule can look at besides the message (filled at end of DATA). */
struct rules_input {
	const struct msg *m;
	const struct mime_result *mime; /* NULL before end of DATA */
	const char *rcpt;		/* at RCPT: the recipient being added */
	bool virus;			/* ClamAV found something */
	bool virus_unknown;		/* ClamAV could not scan: no value */
	const char *virus_name;
	const char *spf, *dkim, *dmarc; /* result names; NULL: not checked */
};

/* One matched rule, for the log, the X-Spam-Status header and the scan. */
struct rules_hit {
	const char *name;  /* the rule's name (owned by the rule set) */
	double score;	   /* its score action, 0 if none */
	char matched[128]; /* the text that matched, made safe */
};

struct rules_outcome {
	/*
	 * The decisive action of the first matching rule that has one
	 * (accept, reject, tempfail, discard, quarantine), else ACT_ACCEPT
	 * with decided false. accept ends evaluation: an allow-list.
	 */
	bool decided;
	enum action action;
	char rcode[4], xcode[10], text[400]; /* reply; quarantine: reason */
	const char *rule;		     /* the deciding rule's name */

	double score; /* the sum of the score actions of matching rules */
	struct rules_hit *hits;
	size_t nhits;

	/* header and tag actions of matching rules, in rule order */
	struct hdrop *headers;
	size_t nheaders;
	char *subject_tag; /* the first tag action's text, or NULL */
	bool limit_hit;	   /* a pattern hit a match limit (logged) */

	/* Stages already evaluated into this outcome (rules_eval's own). */
	int stages_done;
};

struct rules;

/*
 * Reads a rules file, or every *.rules file of a folder in name order.
 * Every error goes to errs as "file:line:column: message"; returns 0, or
 * -1 (and *out NULL) when there is any error.
 */
int rules_load(const char *path, struct rules **out, struct errlist *errs);
/* Is name one rules_load reads from a folder (NAME.rules, not hidden)? */
bool rules_is_file_name(const char *name);
void rules_free(struct rules *r);
/*
 * The earliest stage at which some rule is decided, for negotiation (the
 * filter must be able to answer from there on); RULES_EOM when no rule is
 * decided before end of DATA.
 */
enum rules_stage rules_earliest_needed(const struct rules *r);
/*
 * Evaluates the rules that are decided at this stage (all rules that need
 * no later stage and were not decided earlier, at RULES_EOM all the rest)
 * and adds to out. Precisely, in file order: the rules of this stage, and
 * those of earlier stages not yet evaluated into out (a stage the MTA
 * skipped, or a zeroed out for another message of the connection); RCPT
 * rules at every RCPT (in->rcpt alone; only those with a decisive action
 * count there) and again at RULES_EOM over all of m->rcpts. Stops at the
 * first decisive action; once out->decided is set, does nothing.
 * Thread-safe: compiled patterns are shared, match data is per thread.
 * qid is for the log.
 */
void rules_eval(const struct rules *r, enum rules_stage stage,
		const struct rules_input *in, struct rules_outcome *out,
		const char *qid);
void rules_outcome_free(struct rules_outcome *o);

#endif
