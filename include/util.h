/*
 * util.h: growable buffers, error lists, safe strings and address ranges.
 */
#ifndef UTIL_H
#define UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer, always NUL-terminated. */
struct buf {
	char *data;
	size_t len;
	size_t cap;
};

int buf_append(struct buf *b, const void *p, size_t n);
int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

/* A list of error lines ("file:line: message"), kept in order. */
struct errlist {
	char **lines;
	size_t n;
};

void errlist_add(struct errlist *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void errlist_free(struct errlist *e);

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/*
 * Copies src into dst (size dstlen) so that it is safe in a log line, a
 * header or an SMTP reply: control characters, DEL and, when nospace is
 * set, spaces and double quotes become '?'/'_'; the result is cut at
 * dstlen - 1 bytes, a cut marked with "...".
 */
void util_safe(char *dst, size_t dstlen, const char *src, bool nospace);

/*
 * The same for a header value, which may keep its folds and tabs: an LF
 * followed by a space or a tab stays, so does a tab; any other control
 * byte becomes '?'.
 */
void util_safe_header(char *dst, size_t dstlen, const char *src);

/* An IPv4 or IPv6 address range; IPv4 is kept as IPv4-mapped IPv6. */
struct cidr {
	uint8_t addr[16];
	int bits;
};

int util_cidr_parse(const char *s, struct cidr *c);
int util_addr_parse(const char *s, uint8_t out[16]);
bool util_cidr_match(const struct cidr *c, const uint8_t addr[16]);

/* Milliseconds from a monotonic clock. */
uint64_t util_now_ms(void);

#endif
