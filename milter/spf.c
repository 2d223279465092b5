/*
 * spf.c: SPF (RFC 7208) checks of the HELO and MAIL FROM identities.
 *
 * libspf2 evaluates the records; this module gives it only input it has
 * checked and makes up for what libspf2 gets wrong or lacks:
 *
 *  - DNS: a libspf2 DNS layer of our own turns every query into a
 *    dns_query() on the shared libunbound resolver (dns.c), which caches
 *    and bounds each query by its timeout. libspf2's own cache layer is
 *    not used: it would hide lookups from the limits below.
 *  - Records: the layer fetches SPF records itself (RFC 7208 4.5): TXT
 *    only, never the obsolete SPF type; no record gives none, two give
 *    permerror, a DNS failure temperror. Each record is then checked
 *    against the grammar of RFC 7208 section 12 here (libspf2 accepts
 *    much that is wrong and rejects some that is right) and rewritten
 *    into what libspf2 evaluates correctly: unknown modifiers and exp=
 *    dropped, redirect= moved last (or dropped when there is an "all"),
 *    CIDR lengths of the other address family dropped, a zero CIDR length
 *    (which libspf2 cannot hold) turned into ranges or into a marked name
 *    that our DNS layer answers. A record with bytes outside printable
 *    ASCII, or with a term long enough to come near libspf2's compile
 *    buffers (the CVE-2023-42118 underflow is there), never reaches
 *    libspf2's compiler.
 *  - Limits (RFC 7208 4.6.4): at most 10 terms that query DNS and 2 void
 *    lookups per check, counted across include and redirect, and at most
 *    10 MX names; past any, the result is permerror. PTR answers are cut
 *    to their first 10 names.
 *  - Input: the client address is parsed here, an IPv4-mapped IPv6
 *    address becomes IPv4; a HELO that fails spf_helo_valid() gives none
 *    for the HELO identity and is never given to libspf2 (records that
 *    use %{h} see "helo.invalid", a name that cannot exist); the sender
 *    must be printable ASCII with a local part of at most 64 bytes and a
 *    valid domain, or the result is none.
 *  - Explanations (exp=) are never fetched: nothing here reports them, and
 *    each would be one more lookup and macro expansion of foreign text.
 *  - Errors: libspf2 calls abort() after its error handler; ours jumps back
 *    to the check instead, which then gives temperror.
 *
 * The Received-SPF value and the reason are built here from checked
 * values only, quoted as RFC 7208 section 9.1 wants.
 *
 * Logs at debug level only: libspf2's messages and one line per check.
 * Callers log the result with the queue id.
 *
 * XXX A check runs on one thread from start to end; its counters live in
 * a thread-local pointer because libspf2's DNS hooks have no argument for
 * them. libspf2 still gets 127.0.0.0/8 clients a "pass" of its own.
 */
#include <netinet/in.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <spf2/spf.h>

#include <ctype.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include <glib.h>

#include "log.h"
#include "spf.h"
#include "util.h"

#define SPF_TERM_MAX 10	 /* terms that query DNS, per check */
#define SPF_VOID_MAX 2	 /* lookups that found nothing, per check */
#define SPF_NAMES_MAX 10 /* names of an MX or PTR answer looked at */
#define SPF_NAME_MAX 253
#define SPF_LOCAL_MAX 64
/* A term of a record must compile to well under libspf2's 511 bytes. */
#define SPF_TERM_COST_MAX 400
#define SPF_HELO_NONE "helo.invalid"
/* Macro letters of domain-specs, and of the rest (RFC 7208 7.2). */
#define SPF_LETTERS "slodiphv"
#define SPF_LETTERS_ALL "slodiphvcrt"
/* Our explanation: libspf2's default points to a dead web site. */
#define SPF_EXP_MACRO "SPF%_policy%_of%_the%_sender%_domain%_denies%_this%_host"
#define SPF_EXP_TEXT "SPF policy of the sender domain denies this host"

struct spf {
	SPF_server_t *srv;
	SPF_dns_server_t *layer; /* ours to free: SPF_server_new_dns */
	struct dns *dns;
	char receiver[SPF_NAME_MAX + 1];
	/*
	 * Ends the names of a/mx terms with a zero CIDR length: a name under
	 * it stands for the name before it, and an address record found
	 * there for the client's address. Random, so no record can forge it.
	 */
	char mark[40];
};

/* What one check is about, all of it checked. */
struct spf_job {
	const char *identity; /* "helo" or "mailfrom" */
	char ip[INET6_ADDRSTRLEN];
	int af;
	struct in_addr v4;
	struct in6_addr v6;
	const char *helo; /* a valid HELO, or NULL */
	char sender[SPF_LOCAL_MAX + SPF_NAME_MAX + 16];
	const char *domain; /* the identity's domain */
};

/* One check in progress. */
struct spf_ctx {
	jmp_buf jb;
	const struct spf_job *job;
	int fetches; /* SPF records fetched; the first is the identity's */
	int terms;   /* terms that queried DNS */
	int voids;   /* of those, how many found no records */
	const char *limit; /* which limit was passed, if one was */
	/* Host names of the last MX or PTR answer, looked up next. */
	char pending[SPF_NAMES_MAX][SPF_NAME_MAX + 42];
	int npending, next;
	char fatal[200]; /* libspf2's fatal error */
};

/* A record being checked and rewritten for libspf2. */
struct spf_rec {
	struct buf out;
	const char *redirect; /* its domain-spec, not NUL-terminated */
	size_t nredirect;
	int nexp;
	bool all;
	int af;		  /* the client's address family */
	const char *mark; /* see struct spf */
};

enum spf_mech {
	SPFM_ALL,
	SPFM_INCLUDE,
	SPFM_A,
	SPFM_MX,
	SPFM_PTR,
	SPFM_IP4,
	SPFM_IP6,
	SPFM_EXISTS,
	SPFM_COUNT
};

static const char *spf_mech_names[SPFM_COUNT] = {
    "all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"};

static __thread struct spf_ctx *spf_cur;
static pthread_once_t spf_once = PTHREAD_ONCE_INIT;

/* Copies src into dst as printable ASCII; with comment, no ( ) \ either. */
static void
spf_clean(char *dst, size_t len, const char *src, bool comment)
{
	size_t o = 0;

	for (; src != NULL && *src != '\0' && o + 1 < len; src++) {
		unsigned char ch = (unsigned char)*src;

		if (ch < 0x20 || ch > 0x7e)
			ch = '?';
		else if (comment && (ch == '(' || ch == ')' || ch == '\\'))
			ch = ' ';
		dst[o++] = (char)ch;
	}
	if (len > 0)
		dst[o] = '\0';
}

/*
 * libspf2's messages
 */

static void
spf_lib_log(const char *what, const char *file, int line, const char *msg)
{
	char safe[300];

	spf_clean(safe, sizeof(safe), msg, false);
	log_msg(LOG_DEBUG, "spf: libspf2 %s: %s:%d: %s", what,
		file != NULL ? file : "?", line, safe);
}

/*
 * libspf2's fatal errors: back to the check that called it. Every call
 * into libspf2 is made with spf_cur set, so the abort() is unreachable.
 */
static void __attribute__((noreturn))
spf_lib_error(const char *file, int line, const char *msg)
{
	struct spf_ctx *c = spf_cur;

	spf_lib_log("error", file, line, msg);
	if (c != NULL) {
		spf_clean(c->fatal, sizeof(c->fatal), msg, false);
		longjmp(c->jb, 1);
	}
	abort();
}

static void
spf_lib_warning(const char *file, int line, const char *msg)
{
	spf_lib_log("warning", file, line, msg);
}

static void
spf_lib_info(const char *file, int line, const char *msg)
{
	spf_lib_log("info", file, line, msg);
}

static void
spf_lib_handlers(void)
{
	SPF_error_handler = spf_lib_error;
	SPF_warning_handler = spf_lib_warning;
	SPF_info_handler = spf_lib_info;
	SPF_debug_handler = spf_lib_info;
}

/*
 * Names
 */

/*
 * Is the label p (n bytes) an RFC 7208 toplabel: alphanumeric with a
 * letter, or alphanumeric around inner hyphens?
 */
static bool
spf_toplabel(const char *p, size_t n)
{
	bool alpha = false, dash = false;

	if (n == 0 || !isalnum((unsigned char)p[0]) ||
	    !isalnum((unsigned char)p[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (isalpha((unsigned char)p[i]))
			alpha = true;
		else if (p[i] == '-')
			dash = true;
		else if (!isdigit((unsigned char)p[i]))
			return false;
	}
	return alpha || dash;
}

/*
 * Is name a host or domain name fit to check: labels of letters, digits,
 * '-' and '_', at most 63 bytes each, 253 in all, at least two labels,
 * the last a toplabel?
 */
static bool
spf_domain_valid(const char *name)
{
	const char *label = name, *p;
	size_t len = strlen(name);

	if (len == 0 || len > SPF_NAME_MAX || strchr(name, '.') == NULL)
		return false;
	for (p = name;; p++) {
		if (*p == '.' || *p == '\0') {
			size_t n = (size_t)(p - label);

			if (n == 0 || n > 63)
				return false;
			if (*p == '\0')
				return spf_toplabel(label, n);
			label = p + 1;
		} else if (!isalnum((unsigned char)*p) && *p != '-' &&
			   *p != '_') {
			return false;
		}
	}
}

/* Is s an SMTP address literal: [192.0.2.1] or [IPv6:2001:db8::1]? */
static bool
spf_literal_valid(const char *s)
{
	char in[INET6_ADDRSTRLEN + 8];
	unsigned char bin[sizeof(struct in6_addr)];
	size_t len = strlen(s);

	if (len < 3 || s[0] != '[' || s[len - 1] != ']' ||
	    len - 2 >= sizeof(in))
		return false;
	memcpy(in, s + 1, len - 2);
	in[len - 2] = '\0';
	if (strncasecmp(in, "IPv6:", 5) == 0)
		return inet_pton(AF_INET6, in + 5, bin) == 1;
	return inet_pton(AF_INET, in, bin) == 1;
}

bool
spf_helo_valid(const char *helo)
{
	if (helo == NULL || strlen(helo) > SPF_NAME_MAX)
		return false;
	if (helo[0] == '[')
		return spf_literal_valid(helo);
	return spf_domain_valid(helo);
}

/*
 * May name (from a record, after macro expansion) go to the resolver:
 * printable ASCII without '\' (an escape to libunbound), labels of 1 to
 * 63 bytes, 253 in all, one trailing dot allowed?
 */
static bool
spf_name_ok(const char *name)
{
	size_t len = strlen(name), n = 0;

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > SPF_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)name[i];

		if (ch < 0x20 || ch > 0x7e || ch == '\\')
			return false;
		if (ch != '.' && ++n > 63)
			return false;
		if (ch == '.' && (n == 0 || i + 1 == len))
			return false;
		if (ch == '.')
			n = 0;
	}
	return true;
}

/*
 * Is there surely no such name: its last label no toplabel (no TLD has
 * one), or the reserved TLD "invalid" (RFC 6761 6.4)?
 */
static bool
spf_name_void(const char *name)
{
	size_t len = strlen(name), dot;

	if (len > 0 && name[len - 1] == '.')
		len--;
	for (dot = len; dot > 0 && name[dot - 1] != '.'; dot--)
		;
	return !spf_toplabel(name + dot, len - dot) ||
	       (len - dot == 7 && strncasecmp(name + dot, "invalid", 7) == 0);
}

/*
 * Copies name without our mark into out; false (and no copy) when name
 * does not end with it.
 */
static bool
spf_name_unmark(const struct spf *s, const char *name, char *out, size_t outlen)
{
	size_t len = strlen(name), ml = strlen(s->mark);

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len <= ml || len - ml >= outlen ||
	    strncasecmp(name + len - ml, s->mark, ml) != 0)
		return false;
	memcpy(out, name, len - ml);
	out[len - ml] = '\0';
	return true;
}

/*
 * Record syntax (RFC 7208 section 12)
 */

/* A number of 1 to 3 digits without a leading zero, at most max; or -1. */
static int
spf_syn_num(const char *s, size_t n, int max)
{
	int v = 0;

	if (n == 0 || n > 3 || (s[0] == '0' && n > 1))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v <= max ? v : -1;
}

/* Is s (n bytes) a dotted-quad IPv4 address without leading zeros? */
static bool
spf_syn_ip4(const char *s, size_t n)
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		size_t j = i;

		while (j < n && isdigit((unsigned char)s[j]))
			j++;
		if (spf_syn_num(s + i, j - i, 255) < 0)
			return false;
		if (part < 3 && (j >= n || s[j] != '.'))
			return false;
		i = j + 1;
	}
	return i == n + 1;
}

static bool
spf_syn_ip6(const char *s, size_t n)
{
	char in[INET6_ADDRSTRLEN];
	struct in6_addr a;

	if (n == 0 || n >= sizeof(in))
		return false;
	memcpy(in, s, n);
	in[n] = '\0';
	return inet_pton(AF_INET6, in, &a) == 1;
}

/*
 * Checks the macro at s[*i], a '%': "%{" letter [digits] ["r"]
 * *delimiter "}", "%%", "%_" or "%-"; moves *i past it. 1 for a %{...}
 * expansion, 0 for an escape, -1 if bad.
 */
static int
spf_syn_macro(const char *s, size_t n, size_t *i, const char *letters)
{
	size_t j = *i + 1, d;

	if (j < n && (s[j] == '%' || s[j] == '_' || s[j] == '-')) {
		*i = j + 1;
		return 0;
	}
	if (j + 1 >= n || s[j] != '{' ||
	    strchr(letters, tolower((unsigned char)s[j + 1])) == NULL)
		return -1;
	for (d = j += 2; j < n && isdigit((unsigned char)s[j]); j++)
		;
	if (j > d && spf_syn_num(s + d, j - d, 128) <= 0)
		return -1;
	if (j < n && (s[j] == 'r' || s[j] == 'R'))
		j++;
	while (j < n && s[j] != '\0' && strchr(".-+,/_=", s[j]) != NULL)
		j++;
	if (j >= n || s[j] != '}')
		return -1;
	*i = j + 1;
	return 1;
}

/*
 * Checks macro-string s (n bytes): 1 if it ends with a %{...} expansion,
 * 0 if not, -1 if bad.
 */
static int
spf_syn_macro_string(const char *s, size_t n, const char *letters)
{
	int last = 0;

	for (size_t i = 0; i < n;) {
		if (s[i] == '%') {
			if ((last = spf_syn_macro(s, n, &i, letters)) < 0)
				return -1;
			continue;
		}
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return -1;
		last = 0;
		i++;
	}
	return last;
}

/* Is s (n bytes) a domain-spec: a macro-string ending in a toplabel? */
static bool
spf_syn_domain(const char *s, size_t n)
{
	int last = spf_syn_macro_string(s, n, SPF_LETTERS);
	size_t end = n, dot;

	if (n == 0 || last < 0)
		return false;
	if (last == 1)
		return true;
	if (s[end - 1] == '.')
		end--;
	for (dot = end; dot > 0 && s[dot - 1] != '.'; dot--)
		;
	return dot > 0 && spf_toplabel(s + dot, end - dot);
}

/*
 * Takes a dual-cidr-length off the end of s (*n bytes): *c4 and *c6 the
 * lengths, -1 where absent. -1 if one is bad.
 */
static int
spf_syn_cidr(const char *s, size_t *n, int *c4, int *c6)
{
	size_t j = *n;

	*c4 = *c6 = -1;
	while (j > 0 && isdigit((unsigned char)s[j - 1]))
		j--;
	if (j == *n || j == 0 || s[j - 1] != '/')
		return 0;
	if (j >= 2 && s[j - 2] == '/') {
		if ((*c6 = spf_syn_num(s + j, *n - j, 128)) < 0)
			return -1;
		*n = j - 2;
		for (j = *n; j > 0 && isdigit((unsigned char)s[j - 1]); j--)
			;
		if (j == *n || j == 0 || s[j - 1] != '/')
			return 0;
	}
	if ((*c4 = spf_syn_num(s + j, *n - j, 32)) < 0)
		return -1;
	*n = j - 1;
	return 0;
}

/* Appends " " q and the n bytes at t to the record for libspf2. */
static void
spf_rec_put(struct spf_rec *r, const char *q, const char *t, size_t n)
{
	buf_printf(&r->out, " %s%.*s", q, (int)n, t);
}

/* ip4:/ip6: with arg (n bytes, after the name); a zero length as ranges. */
static int
spf_rec_ip(struct spf_rec *r, const char *q, bool six, const char *arg,
	   size_t n)
{
	const char *slash = memchr(arg, '/', n);
	size_t net = slash != NULL ? (size_t)(slash - arg) : n;
	int len = -1;

	if (n < 2 || arg[0] != ':' ||
	    !(six ? spf_syn_ip6(arg + 1, net - 1)
		  : spf_syn_ip4(arg + 1, net - 1)))
		return -1;
	if (slash != NULL &&
	    (len = spf_syn_num(slash + 1, n - net - 1, six ? 128 : 32)) < 0)
		return -1;
	if (len != 0)
		buf_printf(&r->out, " %sip%c%.*s", q, six ? '6' : '4', (int)n,
			   arg);
	else if (six)
		buf_printf(&r->out, " %sip6:::/1 %sip6:8000::/1", q, q);
	else
		buf_printf(&r->out, " %sip4:0.0.0.0/1 %sip4:128.0.0.0/1", q, q);
	return 0;
}

/*
 * a and mx with arg (n bytes, after the name): only the client family's
 * CIDR length; a zero one as our mark after the name.
 */
static int
spf_rec_host(struct spf_rec *r, const char *q, const char *mech,
	     const char *arg, size_t n)
{
	int c4, c6, len;
	size_t dn = n;

	if (spf_syn_cidr(arg, &dn, &c4, &c6) < 0)
		return -1;
	if (dn > 0 && (arg[0] != ':' || !spf_syn_domain(arg + 1, dn - 1)))
		return -1;
	len = r->af == AF_INET ? c4 : c6;
	buf_printf(&r->out, " %s%s", q, mech);
	if (len == 0) {
		if (dn > 0 && arg[dn - 1] == '.')
			dn--;
		buf_printf(&r->out, ":%.*s%s", dn > 0 ? (int)dn - 1 : 4,
			   dn > 0 ? arg + 1 : "%{d}", r->mark);
		return 0;
	}
	if (dn > 0)
		buf_printf(&r->out, "%.*s", (int)dn, arg);
	if (len > 0)
		buf_printf(&r->out, r->af == AF_INET ? "/%d" : "//%d", len);
	return 0;
}

/* A directive ([qualifier] mechanism) of n bytes at t. */
static int
spf_rec_directive(struct spf_rec *r, const char *t, size_t n)
{
	char q[2] = "";
	size_t len;
	int m;

	if (n > 0 && strchr("+-?~", t[0]) != NULL)
		q[0] = t[0], t++, n--;
	len = strcspn(t, ":/ ");
	if (len > n)
		len = n;
	for (m = 0; m < SPFM_COUNT; m++)
		if (strlen(spf_mech_names[m]) == len &&
		    strncasecmp(t, spf_mech_names[m], len) == 0)
			break;
	switch (m) {
	case SPFM_ALL:
		r->all = true;
		if (n != len)
			return -1;
		break;
	case SPFM_INCLUDE:
	case SPFM_EXISTS:
		if (n < len + 2 || t[len] != ':' ||
		    !spf_syn_domain(t + len + 1, n - len - 1))
			return -1;
		break;
	case SPFM_PTR:
		if (n > len && (t[len] != ':' ||
				!spf_syn_domain(t + len + 1, n - len - 1)))
			return -1;
		break;
	case SPFM_IP4:
	case SPFM_IP6:
		return spf_rec_ip(r, q, m == SPFM_IP6, t + len, n - len);
	case SPFM_A:
	case SPFM_MX:
		return spf_rec_host(r, q, spf_mech_names[m], t + len, n - len);
	default:
		return -1;
	}
	spf_rec_put(r, q, t, n);
	return 0;
}

/* A modifier of n bytes at t, its name eq bytes long. */
static int
spf_rec_modifier(struct spf_rec *r, const char *t, size_t n, size_t eq)
{
	const char *v = t + eq + 1;
	size_t vn = n - eq - 1;

	if (eq == 8 && strncasecmp(t, "redirect", 8) == 0) {
		if (r->redirect != NULL || !spf_syn_domain(v, vn))
			return -1;
		r->redirect = v, r->nredirect = vn;
		return 0;
	}
	if (eq == 3 && strncasecmp(t, "exp", 3) == 0)
		return r->nexp++ > 0 || !spf_syn_domain(v, vn) ? -1 : 0;
	/* Unknown: checked, then ignored (RFC 7208 6). */
	return spf_syn_macro_string(v, vn, SPF_LETTERS_ALL) < 0 ? -1 : 0;
}

/* A term of n bytes at t: a modifier if a name and '=' start it. */
static int
spf_rec_term(struct spf_rec *r, const char *t, size_t n)
{
	size_t k = 0;

	if (isalpha((unsigned char)t[0]))
		for (k = 1; k < n && (isalnum((unsigned char)t[k]) ||
				      strchr("-_.", t[k]) != NULL);
		     k++)
			;
	if (k > 0 && k < n && t[k] == '=')
		return spf_rec_modifier(r, t, n, k);
	return spf_rec_directive(r, t, n);
}

/*
 * Checks record txt (it starts "v=spf1") and writes into out what libspf2
 * is to compile; SPF_E_SYNTAX if it breaks the grammar.
 */
static SPF_errcode_t
spf_rec_check(const struct spf *s, int af, const char *txt, struct buf *out)
{
	struct spf_rec r = {.af = af, .mark = s->mark};
	const char *p = txt + 6;

	buf_printf(&r.out, "v=spf1");
	while (*p != '\0') {
		size_t n;

		if (*p == ' ') {
			p++;
			continue;
		}
		n = strcspn(p, " ");
		if (spf_rec_term(&r, p, n) < 0)
			break;
		p += n;
	}
	if (*p == '\0' && r.redirect != NULL && !r.all)
		buf_printf(&r.out, " redirect=%.*s", (int)r.nredirect,
			   r.redirect);
	*out = r.out;
	return *p == '\0' ? SPF_E_SUCCESS : SPF_E_SYNTAX;
}

/*
 * Is the record fit for libspf2's compiler: printable ASCII, and no term
 * whose compiled form could come near its 511-byte buffers? A term costs
 * its length, 24 bytes of blocks, and 13 more per '%' (one block each).
 */
static SPF_errcode_t
spf_rec_screen(const char *txt)
{
	size_t cost = 0;

	for (const char *p = txt;; p++) {
		if (*p == ' ' || *p == '\0') {
			if (cost > SPF_TERM_COST_MAX)
				return SPF_E_BIG_STRING;
			if (*p == '\0')
				return SPF_E_SUCCESS;
			cost = 0;
			continue;
		}
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			return SPF_E_INVALID_CHAR;
		if (cost == 0)
			cost = 24;
		cost += *p == '%' ? 13 : 1;
	}
}

/*
 * The limits of one check
 */

/* Counts a term that queries DNS; -1 once there are too many. */
static int
spf_ctx_term(struct spf_ctx *c)
{
	if (++c->terms > SPF_TERM_MAX && c->limit == NULL)
		c->limit = "more than 10 DNS-querying terms";
	return c->limit != NULL ? -1 : 0;
}

/* Counts a void lookup; -1 once there are too many. */
static int
spf_ctx_void(struct spf_ctx *c)
{
	if (++c->voids > SPF_VOID_MAX && c->limit == NULL)
		c->limit = "more than 2 void DNS lookups";
	return c->limit != NULL ? -1 : 0;
}

/*
 * Is this address lookup one of the names of the last MX or PTR answer
 * (part of that term), rather than a term of its own (a, exists)?
 * libspf2 looks those names up in order, right after the answer.
 */
static bool
spf_ctx_secondary(struct spf_ctx *c, const char *name)
{
	if (c->next < c->npending &&
	    strcasecmp(c->pending[c->next], name) == 0) {
		c->next++;
		return true;
	}
	c->npending = c->next = 0;
	return false;
}

static void
spf_ctx_pend(struct spf_ctx *c, const SPF_dns_rr_t *rr)
{
	c->npending = c->next = 0;
	for (int i = 0; i < rr->num_rr && i < SPF_NAMES_MAX; i++) {
		const char *n =
		    rr->rr_type == ns_t_mx ? rr->rr[i]->mx : rr->rr[i]->ptr;

		snprintf(c->pending[c->npending++], sizeof(c->pending[0]), "%s",
			 n);
	}
}

/* Is this lookup a term of its own (RFC 7208 4.6.4)? */
static bool
spf_ctx_is_term(struct spf_ctx *c, const char *name, ns_type type,
		int should_cache)
{
	switch (type) {
	case ns_t_mx:
		return true;
	case ns_t_ptr:
		/* The ptr mechanism; %{p} asks with should_cache off. */
		return should_cache != 0;
	case ns_t_a:
	case ns_t_aaaa:
		return !spf_ctx_secondary(c, name);
	default:
		return false;
	}
}

/*
 * The DNS layer
 */

static enum dns_status
spf_query(struct spf *s, const char *name, int type, struct ub_result **res)
{
	*res = NULL;
	if (!spf_name_ok(name) || spf_name_void(name))
		return DNS_NXDOMAIN;
	return dns_query(s->dns, name, type, res);
}

static SPF_dns_stat_t
spf_herrno(enum dns_status st)
{
	switch (st) {
	case DNS_OK:
		return NETDB_SUCCESS;
	case DNS_NODATA:
		return NO_DATA;
	case DNS_NXDOMAIN:
		return HOST_NOT_FOUND;
	default: /* RFC 7208 4.4: any other error is temporary */
		return TRY_AGAIN;
	}
}

static SPF_dns_rr_t *
spf_rr_new(SPF_dns_server_t *layer, const char *name, ns_type type,
	   SPF_dns_stat_t herrno)
{
	SPF_dns_rr_t *rr = SPF_dns_rr_new_init(layer, name, type, 0, herrno);

	if (rr == NULL)
		SPF_error("out of memory");
	return rr;
}

/* Appends one record of len bytes at data to rr. */
static void
spf_rr_add(SPF_dns_rr_t *rr, const void *data, size_t len)
{
	if (SPF_dns_rr_buf_realloc(rr, rr->num_rr, len) != SPF_E_SUCCESS)
		SPF_error("out of memory");
	memcpy(rr->rr[rr->num_rr++], data, len);
}

/* A host name from an answer, if it is printable ASCII, then suffix. */
static bool
spf_rr_name(const unsigned char *p, size_t len, const char *suffix, char *out,
	    size_t outlen)
{
	size_t n;

	if (dns_name(p, len, out, outlen) < 0 ||
	    (n = strlen(out)) > SPF_NAME_MAX || n + strlen(suffix) >= outlen)
		return false;
	for (const char *q = out; *q != '\0'; q++)
		if (*q <= 0x20 || *q > 0x7e)
			return false;
	memcpy(out + n, suffix, strlen(suffix) + 1);
	return true;
}

/*
 * Adds record i of res to rr, MX names with suffix; malformed records
 * are skipped.
 */
static void
spf_rr_fill(SPF_dns_rr_t *rr, const struct ub_result *res, int i,
	    const char *suffix)
{
	const unsigned char *p = (const unsigned char *)res->data[i];
	size_t len = (size_t)res->len[i];
	char name[SPF_NAME_MAX + 42];

	switch (rr->rr_type) {
	case ns_t_a:
	case ns_t_aaaa:
		if (len == (rr->rr_type == ns_t_a ? 4u : 16u))
			spf_rr_add(rr, p, len);
		break;
	case ns_t_mx:
		if (len > 2 &&
		    spf_rr_name(p + 2, len - 2, suffix, name, sizeof(name)))
			spf_rr_add(rr, name, strlen(name) + 1);
		break;
	case ns_t_ptr:
		if (rr->num_rr < SPF_NAMES_MAX &&
		    spf_rr_name(p, len, "", name, sizeof(name)))
			spf_rr_add(rr, name, strlen(name) + 1);
		break;
	default:
		break;
	}
}

/* Answers rr for a marked name: the client's address if it had any. */
static void
spf_rr_any(SPF_dns_rr_t *rr, const struct spf_job *j)
{
	if (rr->num_rr == 0 ||
	    (rr->rr_type != ns_t_a && rr->rr_type != ns_t_aaaa))
		return;
	rr->num_rr = 0;
	if (rr->rr_type == ns_t_a)
		spf_rr_add(rr, &j->v4, sizeof(j->v4));
	else
		spf_rr_add(rr, &j->v6, sizeof(j->v6));
}

/* Queries name (without our mark) into rr. */
static void
spf_rr_query(struct spf *s, SPF_dns_rr_t *rr, const char *name, bool marked)
{
	struct ub_result *res;
	enum dns_status st = spf_query(s, name, rr->rr_type, &res);

	rr->herrno = spf_herrno(st);
	for (int i = 0; res != NULL && res->data[i] != NULL; i++)
		spf_rr_fill(rr, res, i, marked ? s->mark : "");
	if (res != NULL)
		ub_resolve_free(res);
	if (rr->herrno == NETDB_SUCCESS && rr->num_rr == 0)
		rr->herrno = NO_DATA;
}

/* libspf2's DNS lookup, through our resolver. */
static SPF_dns_rr_t *
spf_dns_lookup(SPF_dns_server_t *layer, const char *name, ns_type type,
	       int should_cache)
{
	struct spf *s = layer->hook;
	struct spf_ctx *c = spf_cur;
	char real[SPF_NAME_MAX + 2];
	bool marked, term;
	SPF_dns_rr_t *rr = spf_rr_new(layer, name, type, TRY_AGAIN);

	if (c == NULL || c->limit != NULL)
		return rr;
	if (type != ns_t_a && type != ns_t_aaaa && type != ns_t_mx &&
	    type != ns_t_ptr) {
		rr->herrno = NO_DATA; /* TXT is ours; SPF is obsolete */
		return rr;
	}
	term = spf_ctx_is_term(c, name, type, should_cache);
	if (term && spf_ctx_term(c) < 0)
		return rr;

	marked = spf_name_unmark(s, name, real, sizeof(real));
	spf_rr_query(s, rr, marked ? real : name, marked);
	if (marked)
		spf_rr_any(rr, c->job);
	if (type == ns_t_mx && rr->num_rr > SPF_NAMES_MAX)
		c->limit = "more than 10 MX records";
	else if (type == ns_t_mx || type == ns_t_ptr)
		spf_ctx_pend(c, rr);
	if (term && rr->num_rr == 0 && rr->herrno != TRY_AGAIN)
		spf_ctx_void(c);
	if (c->limit != NULL)
		rr->herrno = TRY_AGAIN, rr->num_rr = 0;
	return rr;
}

/* Sets the outcome of a record lookup on resp; returns err. */
static SPF_errcode_t
spf_rec_done(SPF_response_t *resp, SPF_result_t result, SPF_errcode_t err,
	     const char *dom, const char *why)
{
	char safe[SPF_NAME_MAX + 1];

	spf_clean(safe, sizeof(safe), dom, false);
	resp->result = result;
	resp->reason = SPF_REASON_FAILURE;
	resp->err = err;
	return SPF_response_add_error(resp, err, "%s: %s", safe, why);
}

/* TXT record i of res, its strings joined; *bad if it holds a NUL. */
static char *
spf_txt(const struct ub_result *res, int i, bool *bad)
{
	const unsigned char *p = (const unsigned char *)res->data[i];
	size_t len = (size_t)res->len[i], n = 0;
	char *t = dns_txt(res, i);

	for (size_t o = 0; o < len; o += (size_t)p[o] + 1)
		n += p[o];
	*bad = t != NULL && strlen(t) != n;
	return t;
}

/*
 * Picks the SPF record among the TXT records of res: 0 and *txt set, 1
 * when there is none, 2 when there are several; *bad if it holds a NUL.
 */
static int
spf_rec_select(const struct ub_result *res, char **txt, bool *bad)
{
	int found = 0;
	bool b;

	*txt = NULL;
	for (int i = 0; res != NULL && res->data[i] != NULL; i++) {
		char *t = spf_txt(res, i, &b);

		if (t == NULL || strncasecmp(t, "v=spf1", 6) != 0 ||
		    (t[6] != ' ' && t[6] != '\0')) {
			free(t);
			continue;
		}
		if (found++ == 0)
			*txt = t, *bad = b;
		else
			free(t);
	}
	if (found > 1) {
		free(*txt);
		*txt = NULL;
	}
	return found == 0 ? 1 : found == 1 ? 0 : 2;
}

/* Fetches dom's record text: an SPF result class, txt set on PASS. */
static SPF_result_t
spf_rec_fetch(struct spf *s, struct spf_ctx *c, const char *dom, char **txt,
	      bool *bad)
{
	struct ub_result *res;
	enum dns_status st;
	int n;

	*txt = NULL;
	if (!spf_name_ok(dom))
		return SPF_RESULT_NONE;
	st = spf_query(s, dom, ns_t_txt, &res);
	if (st == DNS_TEMPFAIL || st == DNS_PERMFAIL)
		return SPF_RESULT_TEMPERROR;
	n = spf_rec_select(res, txt, bad);
	if (res != NULL)
		ub_resolve_free(res);
	if (st != DNS_OK && c->fetches > 1 && spf_ctx_void(c) < 0)
		return SPF_RESULT_TEMPERROR;
	return n == 0	? SPF_RESULT_PASS
	       : n == 1 ? SPF_RESULT_NONE
			: SPF_RESULT_PERMERROR;
}

/*
 * Checks, rewrites and compiles record txt into *recp; a record refused
 * before libspf2's compiler is logged.
 */
static SPF_errcode_t
spf_rec_compile(SPF_server_t *srv, SPF_request_t *req, SPF_response_t *resp,
		const char *txt, SPF_record_t **recp)
{
	struct spf *s = srv->resolver->hook;
	char dom[SPF_NAME_MAX + 1];
	struct buf out = {0};
	SPF_errcode_t err;

	if ((err = spf_rec_screen(txt)) == SPF_E_SUCCESS)
		err = spf_rec_check(s, req->client_ver, txt, &out);
	if (err == SPF_E_SUCCESS)
		err = spf_rec_screen(out.data);
	if (err != SPF_E_SUCCESS) {
		spf_clean(dom, sizeof(dom), req->cur_dom, false);
		log_msg(LOG_DEBUG, "spf: %s: record refused: %s", dom,
			SPF_strerror(err));
	} else if ((err = SPF_record_compile(srv, resp, recp, out.data)) !=
		       SPF_E_SUCCESS &&
		   *recp != NULL) {
		SPF_record_free(*recp);
		*recp = NULL;
	}
	buf_free(&out);
	return err;
}

/* libspf2's record lookup (the identity's, include's and redirect's). */
static SPF_errcode_t
spf_dns_get_spf(SPF_server_t *srv, SPF_request_t *req, SPF_response_t *resp,
		SPF_record_t **recp)
{
	struct spf_ctx *c = spf_cur;
	const char *dom = req->cur_dom;
	SPF_errcode_t err;
	bool bad = false;
	char *txt;

	*recp = NULL;
	if (c == NULL || c->limit != NULL ||
	    (c->fetches++ > 0 && spf_ctx_term(c) < 0))
		return spf_rec_done(resp, SPF_RESULT_TEMPERROR, SPF_E_DNS_ERROR,
				    dom, "lookup limit");
	switch (spf_rec_fetch(srv->resolver->hook, c, dom, &txt, &bad)) {
	case SPF_RESULT_PASS:
		break;
	case SPF_RESULT_TEMPERROR:
		return spf_rec_done(resp, SPF_RESULT_TEMPERROR, SPF_E_DNS_ERROR,
				    dom, "DNS failure");
	case SPF_RESULT_PERMERROR:
		return spf_rec_done(resp, SPF_RESULT_PERMERROR,
				    SPF_E_MULTIPLE_RECORDS, dom,
				    "several SPF records");
	default:
		return spf_rec_done(resp, SPF_RESULT_NONE, SPF_E_NOT_SPF, dom,
				    "no SPF record");
	}
	err = bad ? SPF_E_INVALID_CHAR
		  : spf_rec_compile(srv, req, resp, txt, recp);
	free(txt);
	if (err != SPF_E_SUCCESS)
		return spf_rec_done(resp, SPF_RESULT_PERMERROR, err, dom,
				    "bad SPF record");
	return SPF_E_SUCCESS;
}

/* libspf2's exp= lookup: never made, our text instead. */
static SPF_errcode_t
spf_dns_get_exp(SPF_server_t *srv, const char *domain, char **bufp,
		size_t *lenp)
{
	(void)srv;
	(void)domain;
	if (*lenp < sizeof(SPF_EXP_TEXT)) {
		char *p = realloc(*bufp, sizeof(SPF_EXP_TEXT));

		if (p == NULL)
			return SPF_E_NO_MEMORY;
		*bufp = p;
		*lenp = sizeof(SPF_EXP_TEXT);
	}
	memcpy(*bufp, SPF_EXP_TEXT, sizeof(SPF_EXP_TEXT));
	return SPF_E_SUCCESS;
}

static void
spf_dns_destroy(SPF_dns_server_t *layer)
{
	free(layer);
}

/*
 * The checker
 */

/* Sets up s->srv; 0, or -1 with the reason in err. */
static int
spf_server_init(struct spf *s, char *err, size_t errlen)
{
	SPF_dns_server_t *layer = xcalloc(1, sizeof(*layer));
	SPF_response_t *resp = NULL;
	SPF_errcode_t e;

	layer->destroy = spf_dns_destroy;
	layer->lookup = spf_dns_lookup;
	layer->get_spf = spf_dns_get_spf;
	layer->get_exp = spf_dns_get_exp;
	layer->name = "edmilter";
	layer->hook = s;
	s->layer = layer;
	if ((s->srv = SPF_server_new_dns(layer, 0)) == NULL) {
		snprintf(err, errlen, "spf: libspf2: cannot create a server");
		return -1;
	}
	if ((e = SPF_server_set_rec_dom(s->srv, s->receiver)) == SPF_E_SUCCESS)
		e = SPF_server_set_explanation(s->srv, SPF_EXP_MACRO, &resp);
	if (resp != NULL)
		SPF_response_free(resp);
	if (e != SPF_E_SUCCESS) {
		snprintf(err, errlen, "spf: libspf2: %s", SPF_strerror(e));
		return -1;
	}
	SPF_server_set_max_dns_mech(s->srv, SPF_TERM_MAX);
	SPF_server_set_max_dns_mx(s->srv, SPF_NAMES_MAX);
	SPF_server_set_max_dns_ptr(s->srv, SPF_NAMES_MAX);
	return 0;
}

static void
spf_mark_init(struct spf *s)
{
	uint64_t r;

	if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
		r = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)s;
	snprintf(s->mark, sizeof(s->mark), ".any-%016llx.invalid",
		 (unsigned long long)r);
}

int
spf_new(struct dns *d, const char *receiver, struct spf **out, char *err,
	size_t errlen)
{
	struct spf_ctx c;
	struct spf *s;
	int rc;

	*out = NULL;
	if (receiver == NULL || !spf_name_ok(receiver) ||
	    strpbrk(receiver, " ;\"()") != NULL) {
		snprintf(err, errlen, "spf: receiver: not a host name");
		return -1;
	}
	pthread_once(&spf_once, spf_lib_handlers);
	s = xcalloc(1, sizeof(*s));
	s->dns = d;
	snprintf(s->receiver, sizeof(s->receiver), "%s", receiver);
	spf_mark_init(s);

	memset(&c, 0, sizeof(c));
	spf_cur = &c;
	if (setjmp(c.jb) == 0) {
		rc = spf_server_init(s, err, errlen);
	} else {
		snprintf(err, errlen, "spf: libspf2: %s", c.fatal);
		rc = -1;
	}
	spf_cur = NULL;
	if (rc < 0) {
		spf_free(s);
		return -1;
	}
	*out = s;
	return 0;
}

void
spf_free(struct spf *s)
{
	struct spf_ctx c;

	if (s == NULL)
		return;
	memset(&c, 0, sizeof(c));
	spf_cur = &c;
	if (setjmp(c.jb) == 0) {
		/* A server from SPF_server_new_dns leaves the layer to us. */
		if (s->srv != NULL)
			SPF_server_free(s->srv);
		if (s->layer != NULL)
			SPF_dns_free(s->layer);
	}
	spf_cur = NULL;
	free(s);
}

const char *
spf_result_name(enum spf_result r)
{
	static const char *names[] = {"none",	  "neutral",  "pass",
				      "fail",	  "softfail", "temperror",
				      "permerror"};

	return (unsigned)r < sizeof(names) / sizeof(*names) ? names[r] : "?";
}

/* Parses the client address into j; an IPv4-mapped IPv6 one as IPv4. */
static int
spf_job_ip(struct spf_job *j, const char *ip)
{
	if (ip == NULL)
		return -1;
	if (inet_pton(AF_INET, ip, &j->v4) == 1) {
		j->af = AF_INET;
	} else if (inet_pton(AF_INET6, ip, &j->v6) == 1) {
		j->af = AF_INET6;
		if (IN6_IS_ADDR_V4MAPPED(&j->v6)) {
			memcpy(&j->v4, j->v6.s6_addr + 12, 4);
			j->af = AF_INET;
		}
	} else {
		return -1;
	}
	inet_ntop(j->af, j->af == AF_INET ? (void *)&j->v4 : (void *)&j->v6,
		  j->ip, sizeof(j->ip));
	return 0;
}

/* Sets j's sender from a bare MAIL FROM address; -1 if unusable. */
static int
spf_job_sender(struct spf_job *j, const char *from)
{
	const char *at = strrchr(from, '@');
	char dom[SPF_NAME_MAX + 2];
	size_t local, dlen;

	if (at == NULL || (dlen = strlen(at + 1)) >= sizeof(dom))
		return -1;
	/* An empty label at the end is no malformed name (RFC 7208 4.3). */
	memcpy(dom, at + 1, dlen + 1);
	if (dlen > 1 && dom[dlen - 1] == '.')
		dom[dlen - 1] = '\0';
	/* An SMTPUTF8 domain is looked up as its A-labels (RFC 8616 4). */
	if (!g_str_is_ascii(dom)) {
		char *a = g_hostname_to_ascii(dom);
		bool fits = a != NULL && strlen(a) < sizeof(dom);

		if (fits)
			memcpy(dom, a, strlen(a) + 1);
		g_free(a);
		if (!fits)
			return -1;
	}
	if (!spf_domain_valid(dom))
		return -1;
	local = (size_t)(at - from);
	if (local > SPF_LOCAL_MAX)
		return -1;
	for (const char *p = from; p < at; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			return -1;
	if (local == 0)
		snprintf(j->sender, sizeof(j->sender), "postmaster@%s", dom);
	else
		snprintf(j->sender, sizeof(j->sender), "%.*s@%s", (int)local,
			 from, dom);
	j->domain = strrchr(j->sender, '@') + 1;
	return 0;
}

/* Is c a character of an RFC 5322 atom? */
static bool
spf_atext(int c)
{
	return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* Appends "key=value;" to b, value as dot-atom or quoted-string. */
static void
spf_kv(struct buf *b, const char *key, const char *val)
{
	bool atom = val[0] != '.' && val[0] != '\0';

	for (const char *p = val; *p != '\0' && atom; p++)
		atom = spf_atext((unsigned char)*p) ||
		       (*p == '.' && p[1] != '.' && p[1] != '\0');
	buf_printf(b, "%s%s=", b->len > 0 ? " " : "", key);
	if (atom) {
		buf_printf(b, "%s;", val);
		return;
	}
	buf_append(b, "\"", 1);
	for (const char *p = val; *p != '\0'; p++) {
		char ch = (unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p;

		if (ch == '"' || ch == '\\')
			buf_append(b, "\\", 1);
		buf_append(b, &ch, 1);
	}
	buf_append(b, "\";", 2);
}

/* The key=value part of Received-SPF; without envelope-from if asked. */
static void
spf_received_pairs(struct buf *b, const struct spf *s, const struct spf_job *j,
		   bool from)
{
	buf_reset(b);
	if (j->ip[0] != '\0')
		spf_kv(b, "client-ip", j->ip);
	if (from && j->identity[0] == 'm' && j->sender[0] != '\0')
		spf_kv(b, "envelope-from", j->sender);
	if (j->helo != NULL)
		spf_kv(b, "helo", j->helo);
	spf_kv(b, "receiver", s->receiver);
	spf_kv(b, "identity", j->identity);
	b->data[--b->len] = '\0'; /* the last ';' */
}

/* Fills r->received_spf: "result (reason) key=value; ...". */
static void
spf_received(const struct spf *s, const struct spf_job *j, struct spf_check *r)
{
	const char *res = spf_result_name(r->result);
	char comment[sizeof(r->reason)] = "";
	struct buf b = {0};
	size_t fixed, room = 0;

	spf_received_pairs(&b, s, j, true);
	if (strlen(res) + 1 + b.len >= sizeof(r->received_spf))
		spf_received_pairs(&b, s, j, false);
	/* What is left for the comment, with " (", ") " and the NUL. */
	fixed = strlen(res) + b.len + 5;
	if (fixed < sizeof(r->received_spf))
		room = sizeof(r->received_spf) - fixed;
	if (room > sizeof(comment))
		room = sizeof(comment);
	spf_clean(comment, room, r->reason, true);
	if (comment[0] != '\0')
		snprintf(r->received_spf, sizeof(r->received_spf), "%s (%s) %s",
			 res, comment, b.data);
	else
		snprintf(r->received_spf, sizeof(r->received_spf), "%s %s", res,
			 b.data);
	buf_free(&b);
}

/*
 * r->reason for a result that libspf2 gave. Long names are cut to fit
 * (precisions below), never the words around them.
 */
static void
spf_reason(const struct spf_job *j, const struct spf_ctx *c,
	   SPF_response_t *resp, struct spf_check *r)
{
	const char *who = j->identity[0] == 'h' ? j->helo : j->sender;
	const char *ip = j->ip, *why = c->limit;
	char *out = r->reason;
	size_t len = sizeof(r->reason);

	if (why == NULL)
		why = resp != NULL ? SPF_strerror(SPF_response_errcode(resp))
				   : "?";
	switch (r->result) {
	case SPFR_PASS:
		snprintf(out, len,
			 "domain of %.150s designates %s as permitted sender",
			 who, ip);
		break;
	case SPFR_FAIL:
	case SPFR_SOFTFAIL:
		snprintf(out, len,
			 "%sdomain of %.140s does not designate %s as "
			 "permitted sender",
			 r->result == SPFR_SOFTFAIL ? "transitioning " : "",
			 who, ip);
		break;
	case SPFR_NEUTRAL:
		snprintf(out, len,
			 "%s is neither permitted nor denied by domain of "
			 "%.150s",
			 ip, who);
		break;
	case SPFR_NONE:
		snprintf(out, len,
			 "domain of %.150s does not publish an SPF record",
			 who);
		break;
	case SPFR_TEMPERROR:
		snprintf(out, len,
			 "temporary error checking domain of %.150s%s%.50s",
			 who, c->fatal[0] != '\0' ? ": libspf2: " : "",
			 c->fatal);
		break;
	default:
		snprintf(out, len,
			 "error in SPF policy of domain of %.150s: %.50s", who,
			 why);
		break;
	}
}

static enum spf_result
spf_map(SPF_response_t *resp)
{
	switch (SPF_response_result(resp)) {
	case SPF_RESULT_NEUTRAL:
		return SPFR_NEUTRAL;
	case SPF_RESULT_PASS:
		return SPFR_PASS;
	case SPF_RESULT_FAIL:
		return SPFR_FAIL;
	case SPF_RESULT_SOFTFAIL:
		return SPFR_SOFTFAIL;
	case SPF_RESULT_NONE:
		return SPFR_NONE;
	case SPF_RESULT_TEMPERROR:
		return SPFR_TEMPERROR;
	case SPF_RESULT_PERMERROR:
		return SPFR_PERMERROR;
	default: /* INVALID: libspf2's way of saying error */
		return SPF_response_errcode(resp) == SPF_E_DNS_ERROR
			   ? SPFR_TEMPERROR
			   : SPFR_PERMERROR;
	}
}

/* Asks libspf2; the caller has set up spf_cur. */
static SPF_response_t *
spf_ask(struct spf *s, const struct spf_job *j)
{
	SPF_request_t *req = SPF_request_new(s->srv);
	SPF_response_t *resp = NULL;

	if (req == NULL)
		return NULL;
	if (j->af == AF_INET)
		SPF_request_set_ipv4(req, j->v4);
	else
		SPF_request_set_ipv6(req, j->v6);
	SPF_request_set_helo_dom(req,
				 j->helo != NULL ? j->helo : SPF_HELO_NONE);
	SPF_request_set_env_from(req, j->sender);
	SPF_request_query_mailfrom(req, &resp);
	SPF_request_free(req);
	return resp;
}

/* Runs the check of job j with libspf2 and fills r. */
static void
spf_run(struct spf *s, const struct spf_job *j, struct spf_check *r)
{
	SPF_response_t *resp = NULL;
	struct spf_ctx c;

	memset(&c, 0, sizeof(c));
	c.job = j;
	spf_cur = &c;
	if (setjmp(c.jb) == 0) {
		/* XXX after a fatal error, what libspf2 held leaks. */
		resp = spf_ask(s, j);
		r->result = resp != NULL ? spf_map(resp) : SPFR_TEMPERROR;
		if (c.limit != NULL)
			r->result = SPFR_PERMERROR;
	} else {
		resp = NULL;
		r->result = SPFR_TEMPERROR;
	}
	spf_cur = NULL;
	spf_reason(j, &c, resp, r);
	if (resp != NULL)
		SPF_response_free(resp);
	log_msg(LOG_DEBUG,
		"spf: identity=%s domain=%s ip=%s result=%s terms=%d voids=%d",
		j->identity, j->domain, j->ip, spf_result_name(r->result),
		c.terms, c.voids);
}

/* Ends a check that never reached libspf2: none, for the reason why. */
static void
spf_none(const struct spf *s, const struct spf_job *j, struct spf_check *r,
	 const char *why)
{
	r->result = SPFR_NONE;
	snprintf(r->reason, sizeof(r->reason), "%s", why);
	log_msg(LOG_DEBUG, "spf: identity=%s ip=%s result=none: %s",
		j->identity, j->ip[0] != '\0' ? j->ip : "?", why);
	spf_received(s, j, r);
}

static void
spf_check_init(struct spf_job *j, struct spf_check *r, const char *identity,
	       const char *helo)
{
	memset(j, 0, sizeof(*j));
	memset(r, 0, sizeof(*r));
	j->identity = identity;
	j->domain = "";
	if (spf_helo_valid(helo))
		j->helo = helo;
}

void
spf_check_helo(struct spf *s, const char *ip, const char *helo,
	       struct spf_check *r)
{
	struct spf_job j;
	const char *why = NULL;

	spf_check_init(&j, r, "helo", helo);
	if (spf_job_ip(&j, ip) < 0)
		why = "client address not usable";
	else if (j.helo == NULL)
		why = "HELO is not a valid host name";
	else if (j.helo[0] == '[')
		why = "HELO is an address literal";
	if (why != NULL) {
		spf_none(s, &j, r, why);
		return;
	}
	snprintf(j.sender, sizeof(j.sender), "postmaster@%s", j.helo);
	j.domain = j.helo;
	snprintf(r->domain, sizeof(r->domain), "%s", j.domain);
	spf_run(s, &j, r);
	spf_received(s, &j, r);
}

void
spf_check_mailfrom(struct spf *s, const char *ip, const char *helo,
		   const char *from, struct spf_check *r)
{
	struct spf_job j;
	const char *why = NULL;

	spf_check_init(&j, r, "mailfrom", helo);
	if (spf_job_ip(&j, ip) < 0) {
		why = "client address not usable";
	} else if (from == NULL || from[0] == '\0') {
		/* The null sender: postmaster@HELO (RFC 7208 2.4). */
		if (j.helo == NULL || j.helo[0] == '[')
			why = "null sender and no HELO host name";
		else
			snprintf(j.sender, sizeof(j.sender), "postmaster@%s",
				 j.helo);
		j.domain = j.helo;
	} else if (spf_job_sender(&j, from) < 0) {
		why = "sender address not usable";
	}
	if (why != NULL) {
		j.sender[0] = '\0';
		spf_none(s, &j, r, why);
		return;
	}
	snprintf(r->domain, sizeof(r->domain), "%s", j.domain);
	spf_run(s, &j, r);
	spf_received(s, &j, r);
}
