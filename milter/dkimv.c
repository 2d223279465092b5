/*
 * dkimv.c: DKIM verification (RFC 6376, RFC 8463, RFC 8301) with
 * libopendkim. One DKIM_LIB per verifier, shared by every thread.
 *
 * Key lookups go through our resolver (dns.c) by libopendkim's query hooks,
 * never its stock resolver, which shares one res_state between threads and
 * turns NXDOMAIN into a temporary failure. libopendkim parses the reply
 * buffer as a DNS message in wire form: we hand it libunbound's answer
 * packet, or a reply made here carrying the question and rcode for
 * NXDOMAIN and NODATA (a permanent "no key"); a timeout, SERVFAIL or
 * refusal is a query error, which it reports as a temporary failure.
 *
 * Policy on top of libopendkim: a signature passes only when the signature
 * and the body hash both verify; rsa-sha1 (RFC 8301) and RSA keys under
 * min_key_bits give policy, and only once they verify; signatures past
 * max_sigs are not looked up and give neutral; a message cut at the size
 * limit is not verified (neutral, with an error). The report's result is
 * the best of its signatures: pass, then temperror (a retry may pass),
 * policy, fail, permerror, neutral.
 *
 * Logs one debug line per signature: "QID: dkim: sig=N d=... s=... a=...
 * b=... bits=N result=... reason=..."; the caller logs the summary.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/nameser.h>
#include <opendkim/dkim.h>

#include "dkimv.h"
#include "log.h"
#include "util.h"

struct dkimv {
	DKIM_LIB *lib;
	struct dns *dns;
	unsigned min_key_bits;
	unsigned max_sigs;
};

/*
 * One key lookup. dns_query waits at most the resolver's timeout, so the
 * query is answered when it starts and waitreply only reports.
 */
struct dkimv_query {
	int status; /* DKIM_DNS_SUCCESS or DKIM_DNS_ERROR */
	size_t len; /* bytes of reply in libopendkim's buffer */
};

/* Writes name in uncompressed wire form; returns its length or -1. */
static int
dkimv_wire_name(const char *name, unsigned char *out, size_t outlen)
{
	size_t o = 0;

	while (*name != '\0') {
		size_t n = strcspn(name, ".");

		if (n == 0 || n > 63 || o + n + 2 > outlen)
			return -1;
		out[o++] = (unsigned char)n;
		memcpy(out + o, name, n);
		o += n;
		name += n;
		if (*name == '.')
			name++;
	}
	if (o + 1 > outlen || o + 1 > NS_MAXCDNAME)
		return -1;
	out[o++] = 0;
	return (int)o;
}

/*
 * Makes an answerless reply to (name, type, IN) with rcode in buf, as a
 * server would send for NXDOMAIN (3) or NODATA (0); returns its length,
 * 0 if it does not fit.
 */
static size_t
dkimv_empty_reply(unsigned char *buf, size_t buflen, const char *name, int type,
		  int rcode)
{
	unsigned char *p;
	int n;

	if (buflen < NS_HFIXEDSZ + NS_QFIXEDSZ + 1)
		return 0;
	memset(buf, 0, NS_HFIXEDSZ);
	buf[2] = 0x81;			/* QR, RD */
	buf[3] = 0x80 | (rcode & 0x0f); /* RA, rcode */
	buf[5] = 1;			/* one question */
	n = dkimv_wire_name(name, buf + NS_HFIXEDSZ,
			    buflen - NS_HFIXEDSZ - NS_QFIXEDSZ);
	/*
	 * A name that is no DNS name (an empty label, one over 63 octets,
	 * over 255 in all) has no key: still an answer, under a name that
	 * fits (libopendkim reads the rcode, not the question), never a
	 * failed query, which would make DMARC a temporary error.
	 */
	if (n < 0)
		n = dkimv_wire_name("invalid", buf + NS_HFIXEDSZ,
				    buflen - NS_HFIXEDSZ - NS_QFIXEDSZ);
	if (n < 0)
		return 0;
	p = buf + NS_HFIXEDSZ + n;
	p[0] = (unsigned char)(type >> 8);
	p[1] = (unsigned char)type;
	p[2] = 0;
	p[3] = ns_c_in;
	return NS_HFIXEDSZ + (size_t)n + NS_QFIXEDSZ;
}

/* Query start hook: asks our resolver and fills libopendkim's buffer. */
static int
dkimv_query_start(void *srv, int type, unsigned char *query, unsigned char *buf,
		  size_t buflen, void **qh)
{
	struct dkimv_query *q = xcalloc(1, sizeof(*q));
	const char *name = (const char *)query;
	struct ub_result *res;

	switch (dns_query(srv, name, type, &res)) {
	case DNS_OK:
		/* An answer too big for the buffer is a failed query. */
		if (res->answer_len > 0 && (size_t)res->answer_len <= buflen) {
			memcpy(buf, res->answer_packet, res->answer_len);
			q->len = (size_t)res->answer_len;
		}
		ub_resolve_free(res);
		break;
	case DNS_NXDOMAIN:
		q->len = dkimv_empty_reply(buf, buflen, name, type, 3);
		break;
	case DNS_NODATA:
		q->len = dkimv_empty_reply(buf, buflen, name, type, 0);
		break;
	default: /* timeout, SERVFAIL, refused: the key may exist */
		break;
	}
	q->status = q->len > 0 ? DKIM_DNS_SUCCESS : DKIM_DNS_ERROR;
	*qh = q;
	return 0;
}

/* Wait hook: the answer is already there. */
static int
dkimv_query_wait(void *srv, void *qh, struct timeval *timeout, size_t *bytes,
		 int *error, int *dnssec)
{
	struct dkimv_query *q = qh;

	(void)srv;
	(void)timeout;
	if (bytes != NULL)
		*bytes = q->len;
	if (error != NULL)
		*error = 0;
	if (dnssec != NULL)
		*dnssec = DKIM_DNSSEC_UNKNOWN;
	return q->status;
}

/* Cancel hook: libopendkim calls it after every wait; frees the query. */
static int
dkimv_query_cancel(void *srv, void *qh)
{
	(void)srv;
	free(qh);
	return 0;
}

/*
 * Called by libopendkim at the end of the headers, before any key is
 * looked up: signatures past max_sigs are ignored and cost no DNS query.
 */
static DKIM_CBSTAT
dkimv_prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs)
{
	const struct dkimv *v = dkim_get_user_context(dkim);

	for (int i = (int)v->max_sigs; i < nsigs; i++)
		dkim_sig_ignore(sigs[i]);
	return DKIM_CBSTAT_CONTINUE;
}

/* Library options and hooks. */
static int
dkimv_setup(struct dkimv *v, char *err, size_t errlen)
{
	unsigned flags = DKIM_LIBFLAGS_BADSIGHANDLES;
	unsigned minbits = 1; /* checked here, once a signature verifies */

	if (dkim_options(v->lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags,
			 sizeof(flags)) != DKIM_STAT_OK ||
	    dkim_options(v->lib, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &minbits,
			 sizeof(minbits)) != DKIM_STAT_OK) {
		snprintf(err, errlen, "libopendkim: cannot set options");
		return -1;
	}
	(void)dkim_dns_set_query_service(v->lib, v->dns);
	dkim_dns_set_query_start(v->lib, dkimv_query_start);
	dkim_dns_set_query_waitreply(v->lib, dkimv_query_wait);
	dkim_dns_set_query_cancel(v->lib, dkimv_query_cancel);
	/* The resolver is ours: libopendkim must not init or close it. */
	dkim_dns_set_init(v->lib, NULL);
	dkim_dns_set_close(v->lib, NULL);
	dkim_dns_set_nslist(v->lib, NULL);
	dkim_dns_set_config(v->lib, NULL);
	dkim_dns_set_trustanchor(v->lib, NULL);
	dkim_set_prescreen(v->lib, dkimv_prescreen);
	return 0;
}

int
dkimv_new(struct dns *d, unsigned min_key_bits, unsigned max_sigs,
	  struct dkimv **out, char *err, size_t errlen)
{
	struct dkimv *v = xcalloc(1, sizeof(*v));

	*out = NULL;
	v->dns = d;
	v->min_key_bits = min_key_bits;
	v->max_sigs = max_sigs < DKIMV_MAX_SIGS ? max_sigs : DKIMV_MAX_SIGS;
	if ((v->lib = dkim_init(NULL, NULL)) == NULL) {
		snprintf(err, errlen, "libopendkim: cannot initialise");
		free(v);
		return -1;
	}
	if (dkimv_setup(v, err, errlen) < 0) {
		dkimv_free(v);
		return -1;
	}
	*out = v;
	return 0;
}

void
dkimv_free(struct dkimv *v)
{
	if (v == NULL)
		return;
	if (v->lib != NULL)
		dkim_close(v->lib);
	free(v);
}

/* Rank of a result for the report: the best signature wins. */
static int
dkimv_rank(enum dkimv_result r)
{
	static const int rank[] = {
	    [DKIMVR_NONE] = 0, [DKIMVR_NEUTRAL] = 1, [DKIMVR_PERMERROR] = 2,
	    [DKIMVR_FAIL] = 3, [DKIMVR_POLICY] = 4,  [DKIMVR_TEMPERROR] = 5,
	    [DKIMVR_PASS] = 6,
	};

	return rank[r];
}

const char *
dkimv_result_name(enum dkimv_result r)
{
	static const char *names[] = {
	    [DKIMVR_NONE] = "none",	      [DKIMVR_PASS] = "pass",
	    [DKIMVR_FAIL] = "fail",	      [DKIMVR_NEUTRAL] = "neutral",
	    [DKIMVR_POLICY] = "policy",	      [DKIMVR_TEMPERROR] = "temperror",
	    [DKIMVR_PERMERROR] = "permerror",
	};

	return names[r];
}

/* Feeds one header: "Name:" and the raw value, its LF folds made CRLF. */
static DKIM_STAT
dkimv_header(DKIM *dkim, const struct msg_hdr *h, struct buf *b)
{
	const char *p;

	buf_reset(b);
	if (buf_printf(b, "%s:", h->name) < 0)
		return DKIM_STAT_NORESOURCE;
	for (p = h->raw; *p != '\0'; p++) {
		if (*p == '\n' && (p == h->raw || p[-1] != '\r') &&
		    buf_append(b, "\r", 1) < 0)
			return DKIM_STAT_NORESOURCE;
		if (buf_append(b, p, 1) < 0)
			return DKIM_STAT_NORESOURCE;
	}
	return dkim_header(dkim, (u_char *)b->data, b->len);
}

/* A failure of libopendkim itself, or a message it cannot read. */
static bool
dkimv_broken(DKIM_STAT st)
{
	return st == DKIM_STAT_NORESOURCE || st == DKIM_STAT_INTERNAL ||
	       st == DKIM_STAT_INVALID;
}

/*
 * Feeds headers and body; returns the status of the last step, dkim_eom's
 * if it got that far (*done).
 */
static DKIM_STAT
dkimv_feed(DKIM *dkim, const struct msg *m, bool *done)
{
	struct buf b = {0};
	DKIM_STAT st = DKIM_STAT_OK;
	size_t i;

	/* A malformed header (or signature) is the signature's problem. */
	*done = false;
	for (i = 0; i < m->nhdrs && !dkimv_broken(st); i++)
		st = dkimv_header(dkim, &m->hdrs[i], &b);
	buf_free(&b);
	if (dkimv_broken(st))
		return st;

	/* NOSIG: no signature libopendkim could use; the list says why. */
	if ((st = dkim_eoh(dkim)) != DKIM_STAT_OK)
		return st;
	if (m->body_start > 0 && m->raw.len > m->body_start)
		st = dkim_body(dkim, (u_char *)m->raw.data + m->body_start,
			       m->raw.len - m->body_start);
	if (st != DKIM_STAT_OK)
		return st;
	*done = true;
	return dkim_eom(dkim, NULL);
}

/* Copies a libopendkim string (maybe NULL) into dst. */
static void
dkimv_copy(char *dst, size_t len, const unsigned char *src)
{
	util_safe(dst, len, src != NULL ? (const char *)src : "", true);
}

/* The first 8 characters of b=, folding white space left out. */
static void
dkimv_bprefix(DKIM_SIGINFO *sig, char *dst, size_t len)
{
	const unsigned char *b =
	    dkim_sig_gettagvalue(sig, false, (u_char *)"b");
	size_t o = 0;

	for (; b != NULL && *b != '\0' && o < 8 && o + 1 < len; b++)
		if (*b != ' ' && *b != '\t' && *b != '\r' && *b != '\n')
			dst[o++] = (char)*b;
	dst[o] = '\0';
	util_safe(dst, len, dst, true);
}

/* Identification of a signature: d=, s=, a=, b=, key size. */
static void
dkimv_describe(DKIM_SIGINFO *sig, struct dkimv_sig *s)
{
	unsigned bits = 0;

	dkimv_copy(s->domain, sizeof(s->domain), dkim_sig_getdomain(sig));
	dkimv_copy(s->selector, sizeof(s->selector), dkim_sig_getselector(sig));
	dkimv_copy(s->algo, sizeof(s->algo),
		   dkim_sig_gettagvalue(sig, false, (u_char *)"a"));
	dkimv_bprefix(sig, s->b, sizeof(s->b));
	if (dkim_sig_getkeysize(sig, &bits) == DKIM_STAT_OK)
		s->keybits = bits;
}

/* Length of one body line (without its CRLF) once canonicalised. */
static size_t
dkimv_canon_line(const char *p, size_t n, bool relaxed)
{
	size_t len = 0;
	bool space = false;

	if (!relaxed)
		return n;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == ' ' || p[i] == '\t') {
			space = true;
			continue;
		}
		len += space ? 2 : 1; /* a run of WSP is one SP */
		space = false;
	}
	return len;
}

/*
 * Length of the body once canonicalised (RFC 6376 3.4.3, 3.4.4): what l=
 * must reach for the signature to cover all of it.
 */
static size_t
dkimv_canon_body_len(const char *body, size_t n, bool relaxed)
{
	size_t total = 0, blanks = 0;

	while (n > 0) {
		const char *eol = memmem(body, n, "\r\n", 2);
		size_t len = eol != NULL ? (size_t)(eol - body) : n;
		size_t c = dkimv_canon_line(body, len, relaxed);

		/* Empty lines count only if something follows them. */
		if (c == 0)
			blanks += 2;
		else
			total += blanks + c + 2, blanks = 0;
		len += eol != NULL ? 2 : 0;
		body += len;
		n -= len;
	}
	return total == 0 && !relaxed ? 2 : total;
}

/* Does l= leave part of the (canonicalised) body unsigned? */
static bool
dkimv_partial(DKIM *dkim, DKIM_SIGINFO *sig, const struct msg *m)
{
	ssize_t signlen = -1;
	dkim_canon_t hc, bc = DKIM_CANON_SIMPLE;
	size_t n = 0;

	if (dkim_sig_gettagvalue(sig, false, (u_char *)"l") == NULL)
		return false;
	if (dkim_sig_getcanonlen(dkim, sig, NULL, NULL, &signlen) !=
		DKIM_STAT_OK ||
	    signlen < 0 || dkim_sig_getcanons(sig, &hc, &bc) != DKIM_STAT_OK)
		return true;
	if (m->body_start > 0 && m->raw.len > m->body_start)
		n = m->raw.len - m->body_start;
	return dkimv_canon_body_len(m->raw.data + m->body_start, n,
				    bc == DKIM_CANON_RELAXED) > (size_t)signlen;
}

/* A signature that verified: pass, or policy for a weak algorithm. */
static enum dkimv_result
dkimv_verified(const struct dkimv *v, DKIM_SIGINFO *sig, struct dkimv_sig *s)
{
	dkim_alg_t alg = DKIM_SIGN_UNKNOWN;

	(void)dkim_sig_getsignalg(sig, &alg);
	if (alg == DKIM_SIGN_ED25519SHA256 && s->keybits == 0)
		s->keybits = 256; /* libopendkim tells RSA sizes only */
	if (alg == DKIM_SIGN_RSASHA1) {
		snprintf(s->reason, sizeof(s->reason),
			 "rsa-sha1 refused (RFC 8301)");
		return DKIMVR_POLICY;
	}
	if (alg != DKIM_SIGN_ED25519SHA256 && s->keybits < v->min_key_bits) {
		snprintf(s->reason, sizeof(s->reason),
			 "key too small (%u bits, %u needed)", s->keybits,
			 v->min_key_bits);
		return DKIMVR_POLICY;
	}
	snprintf(s->reason, sizeof(s->reason), "%s",
		 s->partial_body ? "verified, l= leaves body unsigned"
				 : "verified");
	return DKIMVR_PASS;
}

/* The result of a signature libopendkim reports an error for. */
static enum dkimv_result
dkimv_sigerror(int err, struct dkimv_sig *s)
{
	const char *text = dkim_sig_geterrorstr(err);

	snprintf(s->reason, sizeof(s->reason), "%s",
		 text != NULL ? text : "unknown error");
	switch (err) {
	case DKIM_SIGERROR_KEYFAIL:
		return DKIMVR_TEMPERROR;
	case DKIM_SIGERROR_BADSIG:
		return DKIMVR_FAIL;
	case DKIM_SIGERROR_KEYTOOSMALL: /* not with our options */
		return DKIMVR_POLICY;
	default: /* no key, revoked, malformed, expired, ... */
		return DKIMVR_PERMERROR;
	}
}

/* The verdict on one signature, after dkim_eom. */
static enum dkimv_result
dkimv_judge(const struct dkimv *v, DKIM *dkim, DKIM_SIGINFO *sig,
	    const struct msg *m, struct dkimv_sig *s)
{
	unsigned flags = dkim_sig_getflags(sig);
	int err = dkim_sig_geterror(sig);

	dkimv_describe(sig, s);
	s->partial_body = dkimv_partial(dkim, sig, m);
	if (flags & DKIM_SIGFLAG_IGNORE) {
		snprintf(s->reason, sizeof(s->reason),
			 "not checked: over %u signatures", v->max_sigs);
		return DKIMVR_NEUTRAL;
	}
	if (DKIM_SIG_CHECK(sig))
		return dkimv_verified(v, sig, s);
	if (dkim_sig_getbh(sig) == DKIM_SIGBH_MISMATCH) {
		snprintf(s->reason, sizeof(s->reason), "body hash mismatch");
		return DKIMVR_FAIL;
	}
	if (err != DKIM_SIGERROR_OK && err != DKIM_SIGERROR_UNKNOWN)
		return dkimv_sigerror(err, s);
	if (flags & DKIM_SIGFLAG_PROCESSED) {
		snprintf(s->reason, sizeof(s->reason), "signature mismatch");
		return DKIMVR_FAIL;
	}
	snprintf(s->reason, sizeof(s->reason), "not processed");
	return DKIMVR_NEUTRAL;
}

static void
dkimv_log(const struct msg *m, size_t i, const struct dkimv_sig *s)
{
	log_qid(LOG_DEBUG, m->qid,
		"dkim: sig=%zu d=%s s=%s a=%s b=%s bits=%u partial=%d "
		"result=%s reason=\"%s\"",
		i + 1, s->domain, s->selector, s->algo, s->b, s->keybits,
		s->partial_body, dkimv_result_name(s->result), s->reason);
}

/* Judges every signature libopendkim found. */
static void
dkimv_report(const struct dkimv *v, DKIM *dkim, const struct msg *m,
	     struct dkimv_report *r)
{
	DKIM_SIGINFO **sigs = NULL;
	int n = 0;

	if (dkim_getsiglist(dkim, &sigs, &n) != DKIM_STAT_OK || n <= 0)
		return;
	for (int i = 0; i < n && r->nsigs < DKIMV_MAX_SIGS; i++) {
		struct dkimv_sig *s = &r->sigs[r->nsigs++];

		s->result = dkimv_judge(v, dkim, sigs[i], m, s);
		if (dkimv_rank(s->result) > dkimv_rank(r->result))
			r->result = s->result;
		dkimv_log(m, r->nsigs - 1, s);
	}
}

/* Notes what libopendkim said when the signatures do not tell it all. */
static void
dkimv_error(struct dkimv_report *r, DKIM *dkim, DKIM_STAT st)
{
	const char *detail = dkim != NULL ? dkim_geterror(dkim) : NULL;
	bool unusable = r->nsigs == 0 && !dkimv_broken(st);

	snprintf(r->error, sizeof(r->error), "%slibopendkim: %s%s%s",
		 unusable ? "no usable signature: " : "", dkim_getresultstr(st),
		 detail != NULL ? ": " : "", detail != NULL ? detail : "");
	util_safe(r->error, sizeof(r->error), r->error, false);
	if (unusable)
		r->result = DKIMVR_PERMERROR;
	else if (dkimv_broken(st) &&
		 dkimv_rank(DKIMVR_TEMPERROR) > dkimv_rank(r->result))
		r->result = DKIMVR_TEMPERROR;
}

void
dkimv_verify(struct dkimv *v, const struct msg *m, struct dkimv_report *r)
{
	const char *qid = *m->qid != '\0' ? m->qid : "NOQUEUE";
	DKIM_STAT st = DKIM_STAT_OK;
	bool done;
	DKIM *dkim;

	memset(r, 0, sizeof(*r));
	r->result = DKIMVR_NONE;
	if (msg_header_count(m, "DKIM-Signature") == 0)
		return;
	if (m->truncated) {
		snprintf(r->error, sizeof(r->error),
			 "message over the size limit: not verified");
		r->result = DKIMVR_NEUTRAL;
		return;
	}

	dkim = dkim_verify(v->lib, (const u_char *)qid, NULL, &st);
	if (dkim == NULL) {
		dkimv_error(r, NULL,
			    st == DKIM_STAT_OK ? DKIM_STAT_INTERNAL : st);
		return;
	}
	(void)dkim_set_user_context(dkim, v);
	st = dkimv_feed(dkim, m, &done);
	dkimv_report(v, dkim, m, r);
	/* Stopped early: the signatures were not all checked. */
	if (r->nsigs == 0 || !done || dkimv_broken(st))
		dkimv_error(r, dkim, st);
	dkim_free(dkim);
}
