/*
 * pipe.c: one pass of every check over a message, then one verdict. The
 * checks see only the msg object; the milter callbacks and the offline
 * scanner share this code. Logs the one summary line of each message.
 */
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

/* The verdict the ClamAV result asks for. */
static void
pipe_decide_av(const struct conf *c, struct pipe_report *r)
{
	struct verdict *v = &r->verdict;
	char text[512], reason[600];

	switch (r->av.status) {
	case AV_CLEAN:
		verdict_set(v, ACT_ACCEPT, "clean");
		return;
	case AV_INFECTED:
		snprintf(reason, sizeof(reason), "infected: %s", r->av.name);
		verdict_set(v, c->on_infected, reason);
		pipe_expand(text, sizeof(text), c->reject_message, r->av.name);
		if (v->action == ACT_REJECT)
			verdict_reply(v, "550", "5.7.0", text);
		else if (v->action == ACT_TEMPFAIL)
			verdict_reply(v, "451", "4.7.0", text);
		return;
	case AV_ERROR:
		snprintf(reason, sizeof(reason), "scan error: %s", r->av.error);
		verdict_set(v, c->on_scan_error, reason);
		if (v->action == ACT_REJECT)
			verdict_reply(v, "550", "5.7.0",
				      "message could not be checked for "
				      "viruses");
		else if (v->action == ACT_TEMPFAIL)
			verdict_reply(v, "451", "4.3.0",
				      "message could not be checked for "
				      "viruses, try again later");
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

/* The verdict the DMARC result asks for. */
static void
pipe_decide_auth(const struct conf *c, struct pipe_report *r)
{
	const struct dmarc_check *d = &r->dmarc;
	char reason[400], text[400];

	if (!r->auth_checked)
		return;
	if (d->result == DMARCR_TEMPERROR) {
		snprintf(reason, sizeof(reason), "dmarc temperror: %s",
			 d->reason);
		snprintf(text, sizeof(text),
			 "temporary DNS error verifying the sender domain "
			 "%s, try again later",
			 d->from_domain);
		verdict_propose(&r->verdict, c->on_auth_temp_error, reason,
				"4.3", text);
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

/* Authentication-Results (and Received-SPF): ours replace ours. */
static void
pipe_auth_headers(const struct conf *c, const struct msg *m,
		  struct pipe_report *r)
{
	struct authres_input in = {0};
	struct verdict *v = &r->verdict;

	if (!r->auth_on)
		return;
	pipe_delete_ours(m, v, HDR_AR, pipe_ar_is_ours, c->authserv_id);
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

/* Header changes: ours replace any that came with the message. */
static void
pipe_headers(const struct conf *c, const struct msg *m, struct pipe_report *r)
{
	struct verdict *v = &r->verdict;
	const struct msg_hdr *subj;
	char val[600];
	int n;

	if (c->add_headers) {
		for (n = msg_header_count(m, HDR_SCANNED); n > 0; n--)
			verdict_hdr(v, HDROP_DELETE, HDR_SCANNED, n, NULL);
		for (n = msg_header_count(m, HDR_STATUS); n > 0; n--)
			verdict_hdr(v, HDROP_DELETE, HDR_STATUS, n, NULL);
		snprintf(val, sizeof(val), "%s %s on %s", EDM_NAME, EDM_VERSION,
			 c->hostname);
		verdict_hdr(v, HDROP_ADD, HDR_SCANNED, 0, val);
		if (r->av.status == AV_CLEAN)
			snprintf(val, sizeof(val), "Clean");
		else if (r->av.status == AV_INFECTED)
			snprintf(val, sizeof(val), "Infected (%s)", r->av.name);
		else
			snprintf(val, sizeof(val), "Unchecked (%s)",
				 r->av.error);
		verdict_hdr(v, HDROP_ADD, HDR_STATUS, 0, val);
	}
	if (v->action == ACT_TAG && c->tag_subject[0] != '\0') {
		struct buf b = {0};

		/* The raw value keeps the folds and encoded words whole. */
		subj = msg_header(m, "Subject");
		buf_printf(&b, "%s%s%s", c->tag_subject,
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
pipe_run(const struct snap *s, struct msg *m, struct pipe_report *r)
{
	const struct conf *c = s->conf;
	uint64_t t0 = util_now_ms();

	memset(r, 0, sizeof(*r));
	if (m->failed != NULL) {
		r->av.status = AV_ERROR;
		snprintf(r->av.error, sizeof(r->av.error), "internal error: %s",
			 m->failed);
	} else if (m->truncated) {
		r->av.status = AV_ERROR;
		snprintf(r->av.error, sizeof(r->av.error),
			 "message over MaxMessageSize (%lld bytes)",
			 c->max_message_size);
	} else if (s->av == NULL) {
		r->av.status = AV_ERROR;
		snprintf(r->av.error, sizeof(r->av.error), "%s",
			 s->av_error[0] ? s->av_error
					: "no virus database loaded");
	} else {
		av_scan(s->av, m->raw.data, m->raw.len, &r->av);
	}
	pipe_decide_av(c, r);
	pipe_auth(s, m, r);
	pipe_decide_auth(c, r);

	/* An internal error is never accepted, whatever the config says. */
	if (m->failed != NULL) {
		verdict_set(&r->verdict, ACT_TEMPFAIL, r->av.error);
		verdict_reply(&r->verdict, "451", "4.3.0",
			      "temporary local problem, try again later");
	}
	pipe_auth_headers(c, m, r);
	pipe_headers(c, m, r);
	r->ms = (unsigned)(util_now_ms() - t0);
}

void
pipe_report_free(struct pipe_report *r)
{
	buf_free(&r->authres);
	verdict_free(&r->verdict);
}

void
pipe_log(const struct msg *m, const struct pipe_report *r)
{
	char helo[128], from[256], av[300], reason[300], auth[400] = "";

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
	log_qid(LOG_INFO, m->qid,
		"client=%s helo=%s from=<%s> rcpts=%zu size=%zu clamav=%s "
		"clamav_ms=%u%s verdict=%s reason=\"%s\" ms=%u",
		m->client_addr[0] ? m->client_addr : "unknown", helo, from,
		m->nrcpts, m->size, av, r->av.ms, auth,
		verdict_action_name(r->verdict.action), reason, r->ms);
}
