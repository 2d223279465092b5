/*
 * util.c: growable buffers, error lists, safe strings and address ranges.
 *
 * Allocation failure of a few bytes is not recoverable in a mail filter
 * that must answer every message: xmalloc and friends abort, the MTA's
 * milter_default_action (tempfail) takes over and the mail stays queued.
 * The message buffer itself is grown with buf_append, which reports
 * failure so that a huge message tempfails instead.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		abort();
	return p;
}

void *
xcalloc(size_t n, size_t m)
{
	void *p = calloc(n ? n : 1, m ? m : 1);

	if (p == NULL)
		abort();
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL)
		abort();
	return p;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* Grows b to hold n more bytes plus a NUL; 0 or -1 when memory is short. */
static int
buf_reserve(struct buf *b, size_t n)
{
	size_t want, cap;
	char *p;

	if (n > SIZE_MAX / 2 - b->len)
		return -1;
	want = b->len + n + 1;
	if (want <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < want)
		cap *= 2;
	if ((p = realloc(b->data, cap)) == NULL)
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
	if (buf_reserve(b, n) < 0)
		return -1;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void
buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
errlist_add(struct errlist *e, const char *fmt, ...)
{
	va_list ap;
	char line[1024];

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	e->lines = xrealloc(e->lines, (e->n + 1) * sizeof(*e->lines));
	e->lines[e->n++] = xstrdup(line);
}

void
errlist_free(struct errlist *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->lines[i]);
	free(e->lines);
	e->lines = NULL;
	e->n = 0;
}

void
util_safe(char *dst, size_t dstlen, const char *src, bool nospace)
{
	size_t i, o = 0;

	if (dstlen == 0)
		return;
	for (i = 0; src != NULL && src[i] != '\0'; i++) {
		unsigned char ch = (unsigned char)src[i];

		if (o + 1 >= dstlen) {
			/* Cut: mark it, if there is room for the mark. */
			if (dstlen > 4)
				memcpy(dst + dstlen - 4, "...", 3),
				    o = dstlen - 1;
			break;
		}
		if (ch < 0x20 || ch == 0x7f)
			ch = '?';
		else if (nospace && (ch == ' ' || ch == '"'))
			ch = '_';
		dst[o++] = (char)ch;
	}
	dst[o] = '\0';
}

void
util_safe_header(char *dst, size_t dstlen, const char *src)
{
	size_t o = 0;

	if (dstlen == 0)
		return;
	for (const char *p = src; *p != '\0' && o + 1 < dstlen; p++) {
		unsigned char ch = (unsigned char)*p;

		/* A fold is LF then a space or tab; the MTA adds the CR. */
		if (ch == '\n' && (p[1] == ' ' || p[1] == '\t') && o > 0 &&
		    dst[o - 1] != '\n')
			dst[o++] = '\n';
		else if (ch == '\t')
			dst[o++] = '\t';
		else if (ch < 0x20 || ch == 0x7f)
			dst[o++] = '?';
		else
			dst[o++] = (char)ch;
	}
	/* A value never ends in a fold. */
	while (o > 0 && (dst[o - 1] == '\n' || dst[o - 1] == '\t'))
		o--;
	dst[o] = '\0';
}

int
util_addr_parse(const char *s, uint8_t out[16])
{
	struct in_addr a4;

	if (inet_pton(AF_INET6, s, out) == 1)
		return 0;
	if (inet_pton(AF_INET, s, &a4) == 1) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &a4, 4);
		return 0;
	}
	return -1;
}

int
util_cidr_parse(const char *s, struct cidr *c)
{
	char host[64], *slash, *end;
	long bits;
	bool v4;

	if (strlen(s) >= sizeof(host))
		return -1;
	strcpy(host, s);
	slash = strchr(host, '/');
	if (slash != NULL)
		*slash++ = '\0';
	v4 = strchr(host, ':') == NULL;
	if (util_addr_parse(host, c->addr) < 0)
		return -1;
	if (slash == NULL) {
		c->bits = 128;
		return 0;
	}
	errno = 0;
	bits = strtol(slash, &end, 10);
	if (*slash == '\0' || *end != '\0' || bits < 0 ||
	    bits > (v4 ? 32 : 128))
		return -1;
	c->bits = (int)bits + (v4 ? 96 : 0);
	return 0;
}

bool
util_cidr_match(const struct cidr *c, const uint8_t addr[16])
{
	int full = c->bits / 8, rest = c->bits % 8;

	if (memcmp(c->addr, addr, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((c->addr[full] ^ addr[full]) & (0xff << (8 - rest))) == 0;
}

uint64_t
util_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
