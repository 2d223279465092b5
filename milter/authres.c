/*
 * authres.c: the Authentication-Results header (RFC 8601). One header per
 * message, written from this process's own results; every value that came
 * from the message or the SMTP session is made a safe token or quoted
 * string. Also reads the authserv-id of incoming headers, so that the
 * pipeline can remove those that claim to be ours.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "authres.h"

/* RFC 2045 token characters, plus '@' for addresses (RFC 8601 pvalue). */
static bool
authres_is_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c <= 0x20 || c >= 0x7f || strchr("()<>,;:\\\"/[]?=", c))
			return false;
	}
	return true;
}

void
authres_value(struct buf *out, const char *s)
{
	if (authres_is_token(s)) {
		buf_append(out, s, strlen(s));
		return;
	}
	buf_append(out, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f)
			continue;
		if (c == '"' || c == '\\')
			buf_append(out, "\\", 1);
		buf_append(out, s, 1);
	}
	buf_append(out, "\"", 1);
}

/* A comment's text: no parentheses, backslashes or control bytes. */
static void
authres_comment(struct buf *out, const char *s)
{
	buf_append(out, " (", 2);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c >= 0x20 && c != 0x7f && c != '(' && c != ')' && c != '\\')
			buf_append(out, s, 1);
	}
	buf_append(out, ")", 1);
}

static void
authres_prop(struct buf *out, const char *name, const char *value)
{
	buf_printf(out, " %s=", name);
	authres_value(out, value);
}

static void
authres_spf(struct buf *out, const struct authres_input *in)
{
	buf_printf(out, ";\n\tspf=%s", spf_result_name(in->spf->result));
	if (in->spf->reason[0])
		authres_comment(out, in->spf->reason);
	if (in->mailfrom != NULL && *in->mailfrom)
		authres_prop(out, "smtp.mailfrom", in->mailfrom);
	if (in->helo != NULL)
		authres_prop(out, "smtp.helo", in->helo);
}

static void
authres_dkim(struct buf *out, const struct dkimv_report *dk)
{
	char note[160];

	if (dk->nsigs == 0) {
		buf_printf(out, ";\n\tdkim=none");
		if (dk->error[0])
			authres_comment(out, dk->error);
		return;
	}
	for (size_t i = 0; i < dk->nsigs; i++) {
		const struct dkimv_sig *s = &dk->sigs[i];
		const char *reason;

		buf_printf(out, ";\n\tdkim=%s", dkimv_result_name(s->result));
		/* A pass needs no reason; anything else says why. */
		reason = s->result == DKIMVR_PASS ? "" : s->reason;
		if (s->keybits)
			snprintf(note, sizeof(note), "%u-bit key%s%s%s",
				 s->keybits,
				 s->partial_body ? "; l= shorter "
						   "than the body"
						 : "",
				 reason[0] ? "; " : "", reason);
		else
			snprintf(note, sizeof(note), "%s", reason);
		if (note[0])
			authres_comment(out, note);
		if (s->domain[0])
			authres_prop(out, "header.d", s->domain);
		if (s->selector[0])
			authres_prop(out, "header.s", s->selector);
		if (s->algo[0])
			authres_prop(out, "header.a", s->algo);
		if (s->b[0])
			authres_prop(out, "header.b", s->b);
	}
}

static void
authres_dmarc(struct buf *out, const struct dmarc_check *d)
{
	char note[300];

	buf_printf(out, ";\n\tdmarc=%s", dmarc_result_name(d->result));
	if (d->policy[0])
		snprintf(note, sizeof(note), "p=%s dis=%s; %s", d->policy,
			 dmarc_disposition_name(d->disposition), d->reason);
	else
		snprintf(note, sizeof(note), "%s", d->reason);
	if (note[0])
		authres_comment(out, note);
	if (d->from_domain[0])
		authres_prop(out, "header.from", d->from_domain);
	if (d->policy[0])
		authres_prop(out, "policy.dmarc", d->policy);
}

void
authres_build(const struct authres_input *in, struct buf *out)
{
	size_t start;

	buf_reset(out);
	authres_value(out, in->authserv_id);
	if (in->skipped != NULL)
		authres_comment(out, in->skipped);
	start = out->len;
	if (in->auth_user != NULL) {
		buf_printf(out, ";\n\tauth=pass");
		authres_prop(out, "smtp.auth", in->auth_user);
	}
	if (in->spf != NULL)
		authres_spf(out, in);
	if (in->dkim != NULL)
		authres_dkim(out, in->dkim);
	if (in->dmarc != NULL)
		authres_dmarc(out, in->dmarc);
	if (out->len == start)
		buf_printf(out, "; none");
}

/* Skips spaces and (nested) comments. */
static const char *
authres_skip_cfws(const char *p)
{
	for (;;) {
		while (isspace((unsigned char)*p))
			p++;
		if (*p != '(')
			return p;
		for (int depth = 0; *p; p++) {
			if (*p == '\\' && p[1]) {
				p++;
				continue;
			}
			if (*p == '(')
				depth++;
			else if (*p == ')' && --depth == 0) {
				p++;
				break;
			}
		}
	}
}

int
authres_id(const char *value, char *out, size_t len)
{
	const char *p = authres_skip_cfws(value);
	size_t n = 0;

	if (*p == '"') {
		/* A quoted authserv-id, its quoted-pairs undone. */
		for (p++; *p && *p != '"'; p++) {
			if (*p == '\\' && p[1])
				p++;
			if (n + 1 >= len)
				return -1;
			out[n++] = *p;
		}
	} else {
		for (; *p && !isspace((unsigned char)*p) && *p != ';' &&
		       *p != '(';
		     p++) {
			if (n + 1 >= len)
				return -1;
			out[n++] = *p;
		}
	}
	if (n == 0)
		return -1;
	out[n] = '\0';
	return 0;
}
