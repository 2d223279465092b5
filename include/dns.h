/*
 * dns.h: the one resolver of SPF, DKIM and DMARC: libunbound, caching and
 * thread-safe, with a timeout per query and optional forwarders.
 */
#ifndef DNS_H
#define DNS_H

#include <stddef.h>

#include <unbound.h>

enum dns_status {
	DNS_OK,	      /* answer with data */
	DNS_NODATA,   /* the name exists, no record of that type */
	DNS_NXDOMAIN, /* no such name */
	DNS_TEMPFAIL, /* timeout, SERVFAIL, no answer: try again later */
	DNS_PERMFAIL, /* a refused or malformed query */
};

struct dns;

/*
 * A resolver. nameservers: "" for /etc/resolv.conf's, else addresses with
 * an optional "@port", separated by spaces or commas. timeout_ms bounds
 * each query.
 */
int dns_new(const char *nameservers, unsigned timeout_ms, struct dns **out,
	    char *err, size_t errlen);
void dns_free(struct dns *d);

/*
 * Looks name up; on DNS_OK *res holds the answer (free it with
 * ub_resolve_free), else *res is NULL.
 */
enum dns_status dns_query(struct dns *d, const char *name, int type,
			  struct ub_result **res);
const char *dns_status_name(enum dns_status s);

/* The i-th TXT record of res, its strings joined; NULL if malformed. */
char *dns_txt(const struct ub_result *res, int i);
/* A domain name in uncompressed wire form at p (len bytes) as text. */
int dns_name(const unsigned char *p, size_t len, char *out, size_t outlen);

#endif
