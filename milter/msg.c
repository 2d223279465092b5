/*
 * msg.c: the message object. The milter callbacks and the offline scanner
 * fill it the same way; the checks read it and never learn which front end
 * it came from. The whole message is kept once, in raw, as it is scanned.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "msg.h"

/* What is kept of each header once the message is over its limit. */
#define MSG_CUT_HEADER 1024

/* Buffers larger than this are freed between messages. */
#define MSG_KEEP_BUFFER (1024 * 1024)

/*
 * libclamav recognises a message by its first bytes: a message whose first
 * header is unusual would not be seen as mail. A Received header first
 * makes every message mail. (An mbox "From " line would too, but then a
 * body line starting with "From " would split the message in two and hide
 * what follows it.)
 */
static const char msg_scan_prefix[] = "Received: from edmilter\r\n";

void
msg_init(struct msg *m, size_t limit)
{
	memset(m, 0, sizeof(*m));
	m->limit = limit;
	msg_reset(m);
}

static void
msg_free_message(struct msg *m)
{
	free(m->from);
	m->from = NULL;
	for (size_t i = 0; i < m->nrcpts; i++)
		free(m->rcpts[i]);
	free(m->rcpts);
	m->rcpts = NULL;
	m->nrcpts = 0;
	free(m->auth);
	m->auth = NULL;
	for (size_t i = 0; i < m->nhdrs; i++) {
		free(m->hdrs[i].name);
		free(m->hdrs[i].raw);
		free(m->hdrs[i].value);
	}
	free(m->hdrs);
	m->hdrs = NULL;
	m->nhdrs = 0;
	free(m->failed);
	m->failed = NULL;
	free(m->over_headers);
	m->over_headers = NULL;
}

void
msg_reset(struct msg *m)
{
	msg_free_message(m);
	m->qid[0] = '\0';

	/* A big message's buffer is not kept for the rest of the session. */
	if (m->raw.cap > MSG_KEEP_BUFFER)
		buf_free(&m->raw);
	buf_reset(&m->raw);
	if (buf_append(&m->raw, msg_scan_prefix, sizeof(msg_scan_prefix) - 1) <
	    0)
		m->failed = xstrdup("out of memory");
	m->raw_start = m->raw.len;
	m->body_start = 0;
	m->in_body = false;
	m->size = 0;
	m->truncated = false;
}

void
msg_free(struct msg *m)
{
	msg_free_message(m);
	free(m->client_name);
	free(m->helo);
	for (size_t i = 0; i < m->nmacros; i++) {
		free(m->macros[i].name);
		free(m->macros[i].value);
	}
	free(m->macros);
	buf_free(&m->raw);
	memset(m, 0, sizeof(*m));
}

void
msg_set_client(struct msg *m, const char *addr, const char *name)
{
	snprintf(m->client_addr, sizeof(m->client_addr), "%s",
		 addr ? addr : "");
	free(m->client_name);
	m->client_name = xstrdup(name ? name : "");
}

void
msg_set_helo(struct msg *m, const char *helo)
{
	free(m->helo);
	m->helo = xstrdup(helo ? helo : "");
}

void
msg_set_macro(struct msg *m, const char *name, const char *value)
{
	for (size_t i = 0; i < m->nmacros; i++)
		if (strcmp(m->macros[i].name, name) == 0) {
			free(m->macros[i].value);
			m->macros[i].value = xstrdup(value);
			return;
		}
	m->macros = xrealloc(m->macros, (m->nmacros + 1) * sizeof(*m->macros));
	m->macros[m->nmacros].name = xstrdup(name);
	m->macros[m->nmacros++].value = xstrdup(value);
}

const char *
msg_macro(const struct msg *m, const char *name)
{
	for (size_t i = 0; i < m->nmacros; i++)
		if (strcmp(m->macros[i].name, name) == 0)
			return m->macros[i].value;
	return NULL;
}

/* Strips one pair of angle brackets and surrounding space. */
static char *
msg_bare_addr(const char *a)
{
	size_t n;

	while (isspace((unsigned char)*a))
		a++;
	n = strlen(a);
	while (n > 0 && isspace((unsigned char)a[n - 1]))
		n--;
	if (n >= 2 && a[0] == '<' && a[n - 1] == '>')
		return xstrndup(a + 1, n - 2);
	return xstrndup(a, n);
}

void
msg_set_from(struct msg *m, const char *from)
{
	free(m->from);
	m->from = msg_bare_addr(from ? from : "");
}

void
msg_add_rcpt(struct msg *m, const char *rcpt)
{
	m->rcpts = xrealloc(m->rcpts, (m->nrcpts + 1) * sizeof(*m->rcpts));
	m->rcpts[m->nrcpts++] = msg_bare_addr(rcpt ? rcpt : "");
}

/* Appends bytes to raw, up to the limit; beyond it marks the cut. */
static void
msg_keep(struct msg *m, const char *p, size_t n)
{
	size_t room;

	m->size += n;
	if (m->truncated || m->failed)
		return;
	room = m->limit > m->raw.len - m->raw_start
		   ? m->limit - (m->raw.len - m->raw_start)
		   : 0;
	if (n > room) {
		n = room;
		m->truncated = true;
	}
	if (buf_append(&m->raw, p, n) < 0)
		m->failed = xstrdup("out of memory for the message");
}

/* Appends text to raw with every bare LF turned into CRLF. */
static void
msg_keep_crlf(struct msg *m, const char *s)
{
	const char *p;

	while ((p = strchr(s, '\n')) != NULL) {
		size_t n = (size_t)(p - s);

		if (n > 0 && s[n - 1] == '\r')
			n--;
		msg_keep(m, s, n);
		msg_keep(m, "\r\n", 2);
		s = p + 1;
	}
	msg_keep(m, s, strlen(s));
}

static char *
msg_unfold(const char *raw)
{
	size_t n = strlen(raw), o = 0;
	char *v = xmalloc(n + 1);

	for (size_t i = 0; i < n; i++)
		if (raw[i] != '\r' && raw[i] != '\n')
			v[o++] = raw[i];
	v[o] = '\0';
	while (o > 0 && isspace((unsigned char)v[o - 1]))
		v[--o] = '\0';
	n = strspn(v, " \t");
	memmove(v, v + n, o - n + 1);
	return v;
}

/* Notes the first header limit the message passes. */
static void
msg_check_header(struct msg *m, const char *name, const char *raw)
{
	char why[200], safe[64];
	size_t len = strlen(name) + 1 + strlen(raw);

	if (m->over_headers != NULL)
		return;
	if (m->max_headers > 0 && m->nhdrs > m->max_headers) {
		snprintf(why, sizeof(why), "more than %zu header fields",
			 m->max_headers);
	} else if (m->max_header_size > 0 && len > m->max_header_size) {
		util_safe(safe, sizeof(safe), name, true);
		/* A field name is printable ASCII (RFC 5322): nothing else. */
		for (char *p = safe; *p; p++)
			if ((unsigned char)*p >= 0x80)
				*p = '?';
		snprintf(why, sizeof(why),
			 "header field %s of %zu bytes, over %zu", safe, len,
			 m->max_header_size);
	} else {
		return;
	}
	m->over_headers = xstrdup(why);
}

void
msg_add_header(struct msg *m, const char *name, const char *raw)
{
	struct msg_hdr *h;

	/*
	 * Past the size limit the message is not scanned whole anyway;
	 * headers are still listed (a forged one must still be found and
	 * removed) but only their beginnings are kept.
	 */
	if (raw == NULL)
		raw = "";
	/* Grown by doubling: 40,000 headers must not cost 40,000 copies. */
	if ((m->nhdrs & (m->nhdrs - 1)) == 0)
		m->hdrs = xrealloc(m->hdrs, (m->nhdrs ? m->nhdrs * 2 : 1) *
						sizeof(*m->hdrs));
	h = &m->hdrs[m->nhdrs++];
	h->name = xstrdup(name);
	h->raw = xstrndup(raw, m->truncated && strlen(raw) > MSG_CUT_HEADER
				   ? MSG_CUT_HEADER
				   : strlen(raw));
	h->value = msg_unfold(h->raw);

	msg_keep(m, name, strlen(name));
	msg_keep(m, ":", 1);
	msg_keep_crlf(m, h->raw);
	msg_keep(m, "\r\n", 2);
	msg_check_header(m, name, raw);
}

void
msg_end_headers(struct msg *m)
{
	if (m->in_body)
		return;
	msg_keep(m, "\r\n", 2);
	m->in_body = true;
	m->body_start = m->raw.len;
}

void
msg_add_body(struct msg *m, const void *p, size_t n)
{
	msg_end_headers(m);
	msg_keep(m, p, n);
}

int
msg_header_count(const struct msg *m, const char *name)
{
	int n = 0;

	for (size_t i = 0; i < m->nhdrs; i++)
		if (strcasecmp(m->hdrs[i].name, name) == 0)
			n++;
	return n;
}

const struct msg_hdr *
msg_header(const struct msg *m, const char *name)
{
	for (size_t i = 0; i < m->nhdrs; i++)
		if (strcasecmp(m->hdrs[i].name, name) == 0)
			return &m->hdrs[i];
	return NULL;
}

/* Length of the line at p (without its end) and of its end (0, 1 or 2). */
static size_t
msg_line(const char *p, const char *end, size_t *eol)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));

	if (nl == NULL) {
		*eol = 0;
		return (size_t)(end - p);
	}
	*eol = (nl > p && nl[-1] == '\r') ? 2 : 1;
	return (size_t)(nl - p) + 1 - *eol;
}

void
msg_parse(struct msg *m, const char *data, size_t len)
{
	const char *p = data, *end = data + len;
	struct buf name = {0}, raw = {0};
	size_t n, nl, eol;

	/* An mbox "From " line is not a header. */
	if (len > 6 && memcmp(p, "From ", 5) == 0 && p[5] != ' ' &&
	    p[5] != ':') {
		n = msg_line(p, end, &eol);
		p += n + eol;
	}
	while (p < end) {
		const char *colon;

		n = msg_line(p, end, &eol);
		if (n == 0) { /* the blank line */
			p += eol;
			break;
		}
		colon = memchr(p, ':', n);
		if (colon == NULL || colon == p || *p == ' ' || *p == '\t')
			break; /* not a header: the body starts here */

		/* "Name :" is a header to Postfix too, which drops the space.
		 */
		nl = (size_t)(colon - p);
		while (nl > 0 && (p[nl - 1] == ' ' || p[nl - 1] == '\t'))
			nl--;
		if (memchr(p, ' ', nl) != NULL || memchr(p, '\t', nl) != NULL)
			break;
		buf_reset(&name);
		buf_append(&name, p, nl);
		buf_reset(&raw);
		buf_append(&raw, colon + 1, n - (size_t)(colon + 1 - p));
		p += n + eol;

		/* Continuation lines join with a bare LF, as from the MTA. */
		while (p < end && (*p == ' ' || *p == '\t')) {
			n = msg_line(p, end, &eol);
			buf_append(&raw, "\n", 1);
			buf_append(&raw, p, n);
			p += n + eol;
		}
		msg_add_header(m, name.data, raw.data ? raw.data : "");
	}
	msg_end_headers(m);

	/* The body, with every line end made CRLF. */
	while (p < end) {
		n = msg_line(p, end, &eol);
		msg_add_body(m, p, n);
		if (eol)
			msg_add_body(m, "\r\n", 2);
		p += n + eol;
	}
	buf_free(&name);
	buf_free(&raw);
}
