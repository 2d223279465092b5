/*
 * pipe.c: one pass of every check over a message, then one verdict. The
 * checks see only the msg object; the milter callbacks and the offline
 * scanner share this code. Logs the one summary line of each message.
 */
#include <stdio.h>
#include <string.h>

#include "edmilter.h"
#include "log.h"
#include "pipe.h"

#define HDR_SCANNED "X-Virus-Scanned"
#define HDR_STATUS "X-Virus-Status"

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
		snprintf(reason, sizeof(reason), "scan error: %s",
			 r->av.error);
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
		snprintf(val, sizeof(val), "%s %s on %s", EDM_NAME,
			 EDM_VERSION, c->hostname);
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
		subj = msg_header(m, "Subject");
		snprintf(val, sizeof(val), "%s %s", c->tag_subject,
			 subj ? subj->value : "");
		verdict_hdr(v, subj ? HDROP_CHANGE : HDROP_ADD, "Subject",
			    1, val);
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

	/* An internal error is never accepted, whatever the config says. */
	if (m->failed != NULL) {
		verdict_set(&r->verdict, ACT_TEMPFAIL, r->av.error);
		verdict_reply(&r->verdict, "451", "4.3.0",
			      "temporary local problem, try again later");
	}
	pipe_headers(c, m, r);
	r->ms = (unsigned)(util_now_ms() - t0);
}

void
pipe_report_free(struct pipe_report *r)
{
	verdict_free(&r->verdict);
}

void
pipe_log(const struct msg *m, const struct pipe_report *r)
{
	char helo[128], from[256], av[300], reason[300];

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
	log_qid(LOG_INFO, m->qid,
		"client=%s helo=%s from=<%s> rcpts=%zu size=%zu clamav=%s "
		"clamav_ms=%u verdict=%s reason=\"%s\" ms=%u",
		m->client_addr[0] ? m->client_addr : "unknown", helo, from,
		m->nrcpts, m->size, av, r->av.ms,
		verdict_action_name(r->verdict.action), reason, r->ms);
}
