/*
 * pipe.c: one pass of every check over a message, then one verdict. The
 * checks see only the msg object; the milter callbacks and the offline
 * scanner share this code. Logs the one summary line of each message.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "authres.h"
#include "edmilter.h"
#include "log.h"
#include "pipe.h"

#define HDR_SCANNED "X-Virus-Scanned"
#define HDR_STATUS "X-Virus-Status"
#define HDR_AR "Authentication-Results"
#define HDR_SPAM_FLAG "X-Spam-Flag"
#define HDR_SPAM_SCORE "X-Spam-Score"
#define HDR_SPAM_STATUS "X-Spam-Status"
#define HDR_RSPF "Received-SPF"

/* RejectMessage with %v made the signature name and %% a percent sign. */
static void
pipe_expand(char *dst, size_t len, const char *tmpl, const char *virus)
{
	struct buf b = {0};

	for (const char *p = tmpl; *p; p++) {
		if (p[0] == '%' && p[1] == 'v') {
			buf_append(&b, virus, strlen(virus));
			p++;
		} else if (p[0] == '%' && p[1] == '%') {
			buf_append(&b, "%", 1);
			p++;
		} else {
			buf_append(&b, p, 1);
		}
	}
	snprintf(dst, len, "%s", b.data ? b.data : "");
	buf_free(&b);
}

#define HDR_UNCHECKED "X-Edmilter-Unchecked"

/* Each kind of failure: its check, its key and its reply. */
static const struct pipe_fb_def {
	const char *name;   /* "check/kind", for logs and headers */
	const char *key;    /* the config key choosing the action */
	size_t off;	    /* of that action in struct conf */
	const char *detail; /* enhanced status code without its class */
	const char *text;   /* the reply to a refusal */
	const char *perm;   /* the code's detail for reject, when not detail */
} pipe_fb_defs[] = {
    [FB_NO_ENGINE] = {"clamav/no-engine", "OnNoEngine",
		      offsetof(struct conf, on_no_engine), "3.0",
		      "message could not be checked for viruses", "7.0"},
    [FB_SCAN_ERROR] = {"clamav/scan-error", "OnScanError",
		       offsetof(struct conf, on_scan_error), "3.0",
		       "message could not be checked for viruses", "7.0"},
    [FB_SCAN_TIMEOUT] = {"clamav/scan-timeout", "OnScanTimeout",
			 offsetof(struct conf, on_scan_timeout), "3.0",
			 "message could not be checked for viruses in time",
			 "7.0"},
    [FB_SCAN_LIMIT] = {"clamav/scan-limit", "OnScanLimit",
		       offsetof(struct conf, on_scan_limit), "7.0",
		       "message too complex to be checked for viruses"},
    [FB_OVERSIZE] = {"clamav/oversize", "OnOversize",
		     offsetof(struct conf, on_oversize), "3.4",
		     "message too big to be checked for viruses"},
    [FB_INTERNAL] = {"internal/error", "OnInternalError",
		     offsetof(struct conf, on_internal_error), "3.0",
		     "temporary local problem"},
    [FB_DNS_TEMP] = {"auth/dns-temp", "OnAuthTempError",
		     offsetof(struct conf, on_auth_temp_error), "4.3",
		     "temporary DNS error verifying the sender"},
    [FB_DNS_PERM] = {"auth/dns-perm", "OnAuthPermError",
		     offsetof(struct conf, on_auth_perm_error), "7.1",
		     "the sender's domain could not be verified"},
    [FB_MIME_LIMIT] = {"rules/mime-limit", "OnMIMELimit",
		       offsetof(struct conf, on_mime_limit), "6.0",
		       "message structure too complex to be checked"},
    [FB_HEADER_LIMIT] = {"headers/limit", "OnHeaderLimit",
			 offsetof(struct conf, on_header_limit), "6.0",
			 "message header too big"},
    [FB_RCPT_LIMIT] = {"rcpt/limit", "OnRecipientLimit",
		       offsetof(struct conf, on_recipient_limit), "5.3",
		       "too many recipients"},
};

const char *
pipe_fb_key(enum pipe_fb kind)
{
	return pipe_fb_defs[kind].key;
}

const char *
pipe_fb_name(enum pipe_fb kind)
{
	return pipe_fb_defs[kind].name;
}

enum action
pipe_fb_action(const struct conf *c, enum pipe_fb kind)
{
	return *(const enum action *)((const char *)c + pipe_fb_defs[kind].off);
}

/*
 * A check could not be made: the config's action for this kind of
 * failure is proposed (accept and quarantine deliver the message with a
 * header naming what was not checked), noted in the report and logged
 * with the key that chose it. text replaces the usual reply when given.
 */
static void
pipe_fallback(const struct conf *c, const struct msg *m, struct pipe_report *r,
	      enum pipe_fb kind, const char *detail, const char *text)
{
	const struct pipe_fb_def *d = &pipe_fb_defs[kind];
	enum action a = pipe_fb_action(c, kind);
	char reason[400], reply[600], where[300], safe[300];
	struct verdict *v = &r->verdict;

	util_safe(safe, sizeof(safe), detail, false);
	if (r->nfb < PIPE_MAX_FB) {
		r->fb[r->nfb].kind = kind;
		r->fb[r->nfb].action = a;
		snprintf(r->fb[r->nfb].detail, sizeof(r->fb[r->nfb].detail),
			 "%s", safe);
		r->nfb++;
	}
	conf_where(c, d->key, where, sizeof(where));
	log_qid(LOG_WARNING, m->qid, "fallback: %s: %s: %s by %s (%s)", d->name,
		safe, verdict_action_name(a), d->key,
		strcmp(where, c->path) == 0 ? "default" : where);
	snprintf(reason, sizeof(reason), "%s: %s", d->name, safe);
	snprintf(reply, sizeof(reply), "%s%s", text ? text : d->text,
		 a == ACT_TEMPFAIL ? ", try again later" : "");
	if (a == ACT_ACCEPT && v->action == ACT_ACCEPT)
		verdict_set(v, ACT_ACCEPT, reason);
	else
		verdict_propose(
		    v, a, reason,
		    a == ACT_REJECT && d->perm ? d->perm : d->detail, reply);
}

/* Which fallback each way of not scanning takes. */
static const enum pipe_fb pipe_av_fb[] = {
    [AVF_NONE] = FB_SCAN_ERROR,	  [AVF_NO_ENGINE] = FB_NO_ENGINE,
    [AVF_ERROR] = FB_SCAN_ERROR,  [AVF_TIMEOUT] = FB_SCAN_TIMEOUT,
    [AVF_LIMIT] = FB_SCAN_LIMIT,  [AVF_OVERSIZE] = FB_OVERSIZE,
    [AVF_INTERNAL] = FB_INTERNAL,
};

/* The verdict the ClamAV result asks for. */
static void
pipe_decide_av(const struct conf *c, const struct msg *m, struct pipe_report *r)
{
	struct verdict *v = &r->verdict;
	char text[512], reason[600];

	switch (r->av.status) {
	case AV_CLEAN:
		verdict_set(v, ACT_ACCEPT, "clean");
		return;
	case AV_INFECTED:
		snprintf(reason, sizeof(reason), "infected: %s", r->av.name);
		pipe_expand(text, sizeof(text), c->reject_message, r->av.name);
		verdict_set(v, ACT_ACCEPT, reason);
		if (c->on_infected == ACT_ACCEPT)
			return;
		verdict_propose(v, c->on_infected, reason, "7.0", text);
		return;
	case AV_ERROR:
		verdict_set(v, ACT_ACCEPT, "");
		pipe_fallback(c, m, r, pipe_av_fb[r->av.failure], r->av.error,
			      NULL);
		return;
	}
}

/* SPF, DKIM and DMARC, unless AuthChecks is off. */
static void
pipe_auth(const struct snap *s, const struct msg *m, struct pipe_report *r)
{
	const struct conf *c = s->conf;
	const char *helo = m->helo ? m->helo : "";
	uint64_t t0 = util_now_ms();
	char ip[64];

	if (!c->auth_checks || s->dns == NULL)
		return;
	r->auth_on = true;
	util_safe(ip, sizeof(ip), m->client_addr, true);
	if (conf_is_internal(c, m->client_addr))
		snprintf(r->auth_skipped, sizeof(r->auth_skipped),
			 "internal host %s: SPF and DMARC not checked", ip);
	else if (m->auth != NULL)
		snprintf(r->auth_skipped, sizeof(r->auth_skipped),
			 "authenticated sender: SPF and DMARC not checked");
	else {
		spf_check_helo(s->spf, m->client_addr, helo, &r->spf_helo);
		spf_check_mailfrom(s->spf, m->client_addr, helo,
				   m->from ? m->from : "", &r->spf_mail);
		r->auth_checked = true;
	}
	dkimv_verify(s->dkim, m, &r->dkim);
	if (r->auth_checked)
		dmarc_check(s->dns, m, &r->spf_mail, &r->dkim, &r->dmarc);
	r->auth_ms = (unsigned)(util_now_ms() - t0);
}

/* The verdict the DMARC result asks for, or its fallback. */
static void
pipe_decide_auth(const struct conf *c, const struct msg *m,
		 struct pipe_report *r)
{
	const struct dmarc_check *d = &r->dmarc;
	char reason[400], text[400];

	if (!r->auth_checked)
		return;
	if (d->result == DMARCR_TEMPERROR) {
		snprintf(reason, sizeof(reason), "dmarc temperror: %s",
			 d->reason);
		snprintf(text, sizeof(text),
			 "temporary DNS error verifying the sender domain %s",
			 d->from_domain);
		pipe_fallback(c, m, r, FB_DNS_TEMP, reason, text);
		return;
	}
	if (d->result == DMARCR_PERMERROR ||
	    (r->spf_mail.result == SPFR_PERMERROR &&
	     d->result == DMARCR_NONE)) {
		/* With a DMARC policy, DMARC decides: a fail stays a fail. */
		if (d->result == DMARCR_PERMERROR)
			snprintf(reason, sizeof(reason), "dmarc permerror: %s",
				 d->reason);
		else
			snprintf(reason, sizeof(reason), "spf permerror for %s",
				 m->from && *m->from ? m->from : "the HELO");
		pipe_fallback(c, m, r, FB_DNS_PERM, reason, NULL);
		return;
	}
	if (d->result != DMARCR_FAIL || d->disposition == DMARCD_NONE)
		return;
	snprintf(reason, sizeof(reason), "dmarc fail: %s policy of %s",
		 d->policy, d->from_domain);
	snprintf(text, sizeof(text),
		 "message refused: it fails the DMARC policy of %s (p=%s)",
		 d->from_domain, d->policy);
	verdict_propose(&r->verdict,
			d->disposition == DMARCD_REJECT
			    ? c->on_dmarc_reject
			    : c->on_dmarc_quarantine,
			reason, "7.1", text);
}

/*
 * Deletes the headers of name that pred accepts, all of them, highest
 * index first (indexes count headers of that name, from 1).
 */
static void
pipe_delete_ours(const struct msg *m, struct verdict *v, const char *name,
		 bool (*pred)(const char *value, const char *id),
		 const char *id)
{
	int *idx = xcalloc(m->nhdrs, sizeof(*idx)), n = 0, k = 0;

	for (size_t i = 0; i < m->nhdrs; i++) {
		if (strcasecmp(m->hdrs[i].name, name) != 0)
			continue;
		k++;
		if (pred(m->hdrs[i].value, id))
			idx[n++] = k;
	}
	while (n > 0)
		verdict_hdr(v, HDROP_DELETE, name, idx[--n], NULL);
	free(idx);
}

static bool
pipe_ar_is_ours(const char *value, const char *id)
{
	char got[256];

	return authres_id(value, got, sizeof(got)) == 0 &&
	       strcasecmp(got, id) == 0;
}

static bool
pipe_rspf_is_ours(const char *value, const char *id)
{
	size_t n = strlen(id);

	/* Any receiver= naming us, wherever it stands (comments too). */
	for (const char *p = value; (p = strcasestr(p, "receiver=")) != NULL;
	     p += 9)
		if (strncasecmp(p + 9, id, n) == 0 &&
		    (p[9 + n] == ';' || p[9 + n] == ' ' || p[9 + n] == ')' ||
		     p[9 + n] == '\0'))
			return true;
	return false;
}

/*
 * Authentication-Results (and Received-SPF): ours replace ours. One
 * that claims to be ours goes even with AuthChecks off: a mailbox filter
 * trusting our AuthservID must never read a forged one.
 */
static void
pipe_auth_headers(const struct conf *c, const struct msg *m,
		  struct pipe_report *r)
{
	struct authres_input in = {0};
	struct verdict *v = &r->verdict;

	pipe_delete_ours(m, v, HDR_AR, pipe_ar_is_ours, c->authserv_id);
	if (!r->auth_on)
		return;
	in.authserv_id = c->authserv_id;
	in.skipped = r->auth_skipped[0] ? r->auth_skipped : NULL;
	in.auth_user = m->auth;
	in.dkim = &r->dkim;
	if (r->auth_checked) {
		in.spf = &r->spf_mail;
		in.mailfrom = m->from;
		in.helo = m->helo && spf_helo_valid(m->helo) ? m->helo : NULL;
		in.dmarc = &r->dmarc;
	}
	authres_build(&in, &r->authres);
	if (c->add_received_spf && r->auth_checked) {
		pipe_delete_ours(m, v, HDR_RSPF, pipe_rspf_is_ours,
				 c->hostname);
		verdict_hdr(v, HDROP_INSERT, HDR_RSPF, 0,
			    r->spf_mail.received_spf);
	}
	verdict_hdr(v, HDROP_INSERT, HDR_AR, 0, r->authres.data);
}

/* A deep copy of a rules outcome (hit names belong to the rule set). */
static void
pipe_outcome_copy(struct rules_outcome *dst, const struct rules_outcome *src)
{
	*dst = *src;
	dst->hits = NULL;
	dst->headers = NULL;
	dst->subject_tag = NULL;
	if (src->nhits > 0) {
		dst->hits = xcalloc(src->nhits, sizeof(*dst->hits));
		memcpy(dst->hits, src->hits, src->nhits * sizeof(*dst->hits));
	}
	if (src->nheaders > 0) {
		dst->headers = xcalloc(src->nheaders, sizeof(*dst->headers));
		for (size_t i = 0; i < src->nheaders; i++) {
			dst->headers[i] = src->headers[i];
			dst->headers[i].name = xstrdup(src->headers[i].name);
			dst->headers[i].value =
			    src->headers[i].value
				? xstrdup(src->headers[i].value)
				: NULL;
		}
	}
	if (src->subject_tag != NULL)
		dst->subject_tag = xstrdup(src->subject_tag);
}

void
pipe_session_free(struct pipe_session *ps)
{
	rules_outcome_free(&ps->conn);
	rules_outcome_free(&ps->msg);
	memset(ps, 0, sizeof(*ps));
}

void
pipe_session_mail(struct pipe_session *ps)
{
	rules_outcome_free(&ps->msg);
	pipe_outcome_copy(&ps->msg, &ps->conn);
}

/* What a decisive rule asks to answer before end of DATA. */
static enum action
pipe_early_answer(const struct rules_outcome *o, struct verdict *v)
{
	char reason[300];

	if (!o->decided)
		return ACT_ACCEPT;
	snprintf(reason, sizeof(reason), "rule %s", o->rule ? o->rule : "?");
	switch (o->action) {
	case ACT_REJECT:
	case ACT_TEMPFAIL:
		verdict_set(v, o->action, reason);
		verdict_reply(v, o->rcode, o->xcode, o->text);
		return o->action;
	case ACT_DISCARD:
		verdict_set(v, o->action, reason);
		return ACT_DISCARD;
	default:
		/* accept (an allow-list) and quarantine act at the end. */
		return ACT_ACCEPT;
	}
}

enum action
pipe_early(const struct snap *s, const struct msg *m, struct pipe_session *ps,
	   enum rules_stage stage, const char *rcpt, struct verdict *v)
{
	struct rules_input in = {.m = m, .rcpt = rcpt};
	struct rules_outcome scratch, *o;
	enum action a;

	if (s->rules == NULL)
		return ACT_ACCEPT;
	if (stage == RULES_CONNECT || stage == RULES_HELO)
		o = &ps->conn;
	else if (stage == RULES_MAIL)
		o = &ps->msg;
	else {
		/* One recipient: only its refusal outlives this call. */
		pipe_outcome_copy(&scratch, &ps->msg);
		rules_eval(s->rules, stage, &in, &scratch, m->qid);
		a = pipe_early_answer(&scratch, v);
		if (ps->msg.decided)
			a = ACT_ACCEPT;
		rules_outcome_free(&scratch);
		return a;
	}
	if (o->decided)
		return ACT_ACCEPT;
	rules_eval(s->rules, stage, &in, o, m->qid);
	return pipe_early_answer(o, v);
}

/*
 * The offline scanner has no session: CONNECT, HELO and MAIL run here, in
 * order (RCPT rules run again over every recipient at the end anyway).
 */
static void
pipe_all_early(const struct snap *s, const struct msg *m,
	       struct pipe_session *ps, struct pipe_report *r)
{
	static const char *names[] = {"CONNECT", "HELO", "MAIL"};
	struct verdict scratch = {0};

	for (int st = RULES_CONNECT; st <= RULES_MAIL; st++) {
		if (st == RULES_MAIL)
			pipe_session_mail(ps);
		if (pipe_early(s, m, ps, (enum rules_stage)st, NULL,
			       &scratch) != ACT_ACCEPT) {
			r->rules_stage = names[st];
			if (st != RULES_MAIL)
				pipe_session_mail(ps);
			break;
		}
	}
	verdict_free(&scratch);
}

/* The message decoded for the rules, within the MIME limits. */
static void
pipe_mime(const struct conf *c, const struct msg *m, struct pipe_report *r)
{
	struct mime_limits lim = {
	    .depth = (int)c->mime_max_depth,
	    .parts = (size_t)c->mime_max_parts,
	    .decoded_bytes = (size_t)c->mime_max_decoded,
	};

	char why[300];

	if (mime_parse(m->raw.data + m->raw_start, m->raw.len - m->raw_start,
		       &lim, &r->mime) < 0) {
		snprintf(why, sizeof(why), "cannot decode: %s",
			 r->mime.error ? r->mime.error : "?");
		pipe_fallback(c, m, r, FB_MIME_LIMIT, why, NULL);
	} else if (r->mime.limited) {
		snprintf(why, sizeof(why), "MIME limit hit: %s",
			 r->mime.limit ? r->mime.limit : "?");
		pipe_fallback(c, m, r, FB_MIME_LIMIT, why, NULL);
	}
}

/* The rules at end of DATA, after every other check. */
static void
pipe_rules(const struct snap *s, struct msg *m, struct pipe_session *ps,
	   struct pipe_report *r)
{
	struct pipe_session local = {0};
	struct rules_input in = {0};
	uint64_t t0 = util_now_ms();

	if (s->rules == NULL)
		return;
	r->rules_on = true;
	if (ps == NULL) {
		ps = &local;
		pipe_all_early(s, m, ps, r);
	}
	pipe_mime(s->conf, m, r);
	in.m = m;
	in.mime = &r->mime;
	in.virus = r->av.status == AV_INFECTED;
	in.virus_unknown = r->av.status == AV_ERROR;
	in.virus_name = in.virus ? r->av.name : NULL;
	if (r->auth_checked) {
		in.spf = spf_result_name(r->spf_mail.result);
		in.dmarc = dmarc_result_name(r->dmarc.result);
	}
	if (r->auth_on)
		in.dkim = dkimv_result_name(r->dkim.result);
	rules_eval(s->rules, RULES_EOM, &in, &ps->msg, m->qid);
	pipe_outcome_copy(&r->rules, &ps->msg);
	if (ps == &local)
		pipe_session_free(&local);
	if (r->rules.decided && r->rules_stage == NULL)
		r->rules_stage = "EOM";
	r->rules_ms = (unsigned)(util_now_ms() - t0);
}

/* The verdict of a decisive rule, or of the score's thresholds. */
static void
pipe_decide_rules(const struct conf *c, struct pipe_report *r)
{
	const struct rules_outcome *o = &r->rules;
	char reason[300], text[300];

	if (!r->rules_on)
		return;
	if (o->decided) {
		snprintf(reason, sizeof(reason), "rule %s",
			 o->rule ? o->rule : "?");
		if (o->action > r->verdict.action) {
			verdict_set(&r->verdict, o->action, reason);
			if (o->action == ACT_REJECT ||
			    o->action == ACT_TEMPFAIL)
				verdict_reply(&r->verdict, o->rcode, o->xcode,
					      o->text);
		}
		/* accept: an allow-list, no score threshold applies. */
		return;
	}
	snprintf(reason, sizeof(reason), "score %.1f", o->score);
	if (c->score_reject > 0 && o->score >= c->score_reject) {
		snprintf(text, sizeof(text),
			 "message refused as spam (score %.1f)", o->score);
		verdict_propose(&r->verdict, ACT_REJECT, reason, "7.1", text);
	} else if (c->score_quarantine > 0 && o->score >= c->score_quarantine) {
		verdict_propose(&r->verdict, ACT_QUARANTINE, reason, "7.1", "");
	} else if (o->score >= c->score_tag) {
		verdict_propose(&r->verdict, ACT_TAG, reason, "7.1", "");
		if (r->verdict.action == ACT_TAG && r->subject_tag == NULL)
			r->subject_tag = c->spam_tag_subject;
	}
}

static bool
pipe_any(const char *value, const char *id)
{
	(void)value, (void)id;
	return true;
}

/* SpamAssassin's headers, which mailbox filters already understand. */
static void
pipe_rules_headers(const struct conf *c, const struct msg *m,
		   struct pipe_report *r)
{
	const struct rules_outcome *o = &r->rules;
	struct verdict *v = &r->verdict;
	bool spam = o->score >= c->score_tag;
	struct buf b = {0};

	/* Forged ones go even without rules: nothing here vouches. */
	pipe_delete_ours(m, v, HDR_SPAM_FLAG, pipe_any, "");
	pipe_delete_ours(m, v, HDR_SPAM_SCORE, pipe_any, "");
	pipe_delete_ours(m, v, HDR_SPAM_STATUS, pipe_any, "");
	if (!r->rules_on)
		return;
	verdict_hdr(v, HDROP_ADD, HDR_SPAM_FLAG, 0, spam ? "YES" : "NO");
	buf_printf(&b, "%.1f", o->score);
	verdict_hdr(v, HDROP_ADD, HDR_SPAM_SCORE, 0, b.data);
	buf_reset(&b);
	buf_printf(&b,
		   "%s, score=%.1f required=%.1f tests=", spam ? "Yes" : "No",
		   o->score, c->score_tag);
	for (size_t i = 0; i < o->nhits; i++)
		buf_printf(&b, "%s%s", i ? "," : "", o->hits[i].name);
	if (o->nhits == 0)
		buf_printf(&b, "none");
	verdict_hdr(v, HDROP_ADD, HDR_SPAM_STATUS, 0, b.data);
	buf_free(&b);
	for (size_t i = 0; i < o->nheaders; i++)
		verdict_hdr(v, HDROP_ADD, o->headers[i].name, 0,
			    o->headers[i].value);
	if (o->subject_tag != NULL && r->subject_tag == NULL)
		r->subject_tag = o->subject_tag;
}

/* Header changes: ours replace any that came with the message. */
static void
pipe_headers(const struct conf *c, const struct msg *m, struct pipe_report *r)
{
	struct verdict *v = &r->verdict;
	const struct msg_hdr *subj;
	char val[600];
	int n;

	/* Never trusted, whether or not ours are added. */
	for (n = msg_header_count(m, HDR_SCANNED); n > 0; n--)
		verdict_hdr(v, HDROP_DELETE, HDR_SCANNED, n, NULL);
	for (n = msg_header_count(m, HDR_STATUS); n > 0; n--)
		verdict_hdr(v, HDROP_DELETE, HDR_STATUS, n, NULL);
	if (c->add_headers) {
		snprintf(val, sizeof(val), "%s %s on %s", EDM_NAME, EDM_VERSION,
			 c->hostname);
		verdict_hdr(v, HDROP_ADD, HDR_SCANNED, 0, val);
		if (r->av.status == AV_CLEAN)
			snprintf(val, sizeof(val), "Clean");
		else if (r->av.status == AV_INFECTED)
			snprintf(val, sizeof(val), "Infected (%s)", r->av.name);
		else if (r->av.failure == AVF_NO_ENGINE)
			snprintf(val, sizeof(val),
				 "Unchecked (no virus database loaded)");
		else
			snprintf(val, sizeof(val), "Unchecked (%s)",
				 r->av.error);
		verdict_hdr(v, HDROP_ADD, HDR_STATUS, 0, val);
	}
	/* What was not checked, said by us alone. */
	for (n = msg_header_count(m, HDR_UNCHECKED); n > 0; n--)
		verdict_hdr(v, HDROP_DELETE, HDR_UNCHECKED, n, NULL);
	for (size_t i = 0; i < r->nfb; i++) {
		/* The log has the database's path; the mail does not. */
		snprintf(val, sizeof(val), "%s: %s",
			 pipe_fb_defs[r->fb[i].kind].name,
			 r->fb[i].kind == FB_NO_ENGINE
			     ? "no virus database loaded"
			     : r->fb[i].detail);
		verdict_hdr(v, HDROP_ADD, HDR_UNCHECKED, 0, val);
	}
	/* Virus tags first, then the rules' and the score's. */
	if (v->action == ACT_TAG && r->av.status == AV_INFECTED)
		r->subject_tag = c->tag_subject;
	else if (v->action == ACT_TAG && r->subject_tag == NULL)
		r->subject_tag = c->spam_tag_subject;
	if (verdict_delivers(v->action) && r->subject_tag != NULL &&
	    r->subject_tag[0] != '\0') {
		struct buf b = {0};

		/* The raw value keeps the folds and encoded words whole. */
		subj = msg_header(m, "Subject");
		buf_printf(&b, "%s%s%s", r->subject_tag,
			   subj && subj->raw[0] != ' ' && subj->raw[0] != '\t'
			       ? " "
			       : "",
			   subj ? subj->raw : "");
		verdict_hdr(v, subj ? HDROP_CHANGE : HDROP_ADD, "Subject", 1,
			    b.data);
		buf_free(&b);
	}
}

void
pipe_run(const struct snap *s, struct msg *m, struct pipe_session *ps,
	 struct pipe_report *r)
{
	const struct conf *c = s->conf;
	uint64_t t0 = util_now_ms();

	memset(r, 0, sizeof(*r));
	if (m->failed != NULL) {
		r->av.status = AV_ERROR;
		r->av.failure = AVF_INTERNAL;
		snprintf(r->av.error, sizeof(r->av.error), "%s", m->failed);
	} else if (s->av == NULL) {
		r->av.status = AV_ERROR;
		r->av.failure = AVF_NO_ENGINE;
		snprintf(r->av.error, sizeof(r->av.error), "%s",
			 s->av_error[0] ? s->av_error
					: "no virus database loaded");
	} else {
		av_scan(s->av, m->raw.data, m->raw.len, &r->av);
		/* What was kept of a cut message is scanned: a find counts. */
		if (m->truncated && r->av.status != AV_INFECTED) {
			r->av.status = AV_ERROR;
			r->av.failure = AVF_OVERSIZE;
			snprintf(r->av.error, sizeof(r->av.error),
				 "message over MaxMessageSize (%zu bytes), "
				 "only its beginning scanned",
				 m->limit);
		}
	}
	pipe_decide_av(c, m, r);
	if (m->over_headers != NULL)
		pipe_fallback(c, m, r, FB_HEADER_LIMIT, m->over_headers, NULL);
	/* Refusing actions refused the extra recipients at RCPT already. */
	if (m->nrcpts > (size_t)c->max_recipients &&
	    verdict_delivers(pipe_fb_action(c, FB_RCPT_LIMIT))) {
		char why[100];

		snprintf(why, sizeof(why), "%zu recipients, over %ld",
			 m->nrcpts, c->max_recipients);
		pipe_fallback(c, m, r, FB_RCPT_LIMIT, why, NULL);
	}
	pipe_auth(s, m, r);
	pipe_decide_auth(c, m, r);
	pipe_rules(s, m, ps, r);
	pipe_decide_rules(c, r);

	pipe_auth_headers(c, m, r);
	pipe_rules_headers(c, m, r);
	pipe_headers(c, m, r);
	r->ms = (unsigned)(util_now_ms() - t0);
}

void
pipe_report_free(struct pipe_report *r)
{
	buf_free(&r->authres);
	rules_outcome_free(&r->rules);
	mime_result_free(&r->mime);
	verdict_free(&r->verdict);
}

/* " score=N rules=A,B rules_ms=N", cut at a rule name if too long. */
static void
pipe_log_rules(const struct pipe_report *r, char *out, size_t len)
{
	const struct rules_outcome *o = &r->rules;
	size_t n;

	if (!r->rules_on)
		return;
	n = (size_t)snprintf(out, len, " score=%.1f rules=", o->score);
	for (size_t i = 0; i < o->nhits && n + 64 < len; i++)
		n += (size_t)snprintf(out + n, len - n, "%s%s", i ? "," : "",
				      o->hits[i].name);
	if (o->nhits == 0 && n + 8 < len)
		n += (size_t)snprintf(out + n, len - n, "-");
	if (n + 24 < len)
		snprintf(out + n, len - n, " rules_ms=%u", r->rules_ms);
}

void
pipe_log(const struct msg *m, const struct pipe_report *r)
{
	char helo[128], from[256], av[300], reason[300], auth[400] = "";
	char rules[600] = "", fb[300] = "";

	util_safe(helo, sizeof(helo), m->helo ? m->helo : "", true);
	util_safe(from, sizeof(from), m->from ? m->from : "", true);
	util_safe(reason, sizeof(reason), r->verdict.reason, false);
	for (char *p = reason; *p; p++)
		if (*p == '"')
			*p = '\'';
	if (r->av.status == AV_INFECTED)
		snprintf(av, sizeof(av), "infected virus=%s", r->av.name);
	else
		snprintf(av, sizeof(av), "%s", av_status_name(r->av.status));
	if (r->auth_checked)
		snprintf(auth, sizeof(auth),
			 " spf=%s dkim=%s dmarc=%s dmarc_domain=%s auth_ms=%u",
			 spf_result_name(r->spf_mail.result),
			 dkimv_result_name(r->dkim.result),
			 dmarc_result_name(r->dmarc.result),
			 r->dmarc.from_domain[0] ? r->dmarc.from_domain : "-",
			 r->auth_ms);
	else if (r->auth_on)
		snprintf(auth, sizeof(auth),
			 " spf=skipped dkim=%s dmarc=skipped auth_ms=%u",
			 dkimv_result_name(r->dkim.result), r->auth_ms);
	pipe_log_rules(r, rules, sizeof(rules));
	for (size_t i = 0, n = 0; i < r->nfb && n + 64 < sizeof(fb); i++)
		n += (size_t)snprintf(
		    fb + n, sizeof(fb) - n, "%s%s:%s",
		    i ? "," : " fallback=", pipe_fb_defs[r->fb[i].kind].name,
		    verdict_action_name(r->fb[i].action));
	log_qid(LOG_INFO, m->qid,
		"client=%s helo=%s from=<%s> rcpts=%zu size=%zu clamav=%s "
		"clamav_ms=%u%s%s%s verdict=%s reason=\"%s\" ms=%u",
		m->client_addr[0] ? m->client_addr : "unknown", helo, from,
		m->nrcpts, m->size, av, r->av.ms, auth, rules, fb,
		verdict_action_name(r->verdict.action), reason, r->ms);
}

enum action
pipe_rcpt_limit(const struct conf *c, const struct msg *m, const char *rcpt,
		struct verdict *v)
{
	struct pipe_report r;
	char why[400];

	/* Taken: the end of DATA applies the fallback once. */
	if (verdict_delivers(pipe_fb_action(c, FB_RCPT_LIMIT)))
		return ACT_ACCEPT;
	memset(&r, 0, sizeof(r));
	snprintf(why, sizeof(why), "over MaxRecipients %ld: %.300s",
		 c->max_recipients, rcpt ? rcpt : "");
	pipe_fallback(c, m, &r, FB_RCPT_LIMIT, why, NULL);
	*v = r.verdict;
	/* RFC 5321 4.5.3.1.10: the rest comes in a new transaction. */
	if (v->action == ACT_TEMPFAIL)
		verdict_reply(v, "452", "4.5.3", r.verdict.text);
	else
		verdict_reply(v, "550", "5.5.3", r.verdict.text);
	return v->action;
}
