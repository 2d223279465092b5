/*
 * dkimv.h: DKIM verification (RFC 6376, RFC 8463) with libopendkim, its
 * key lookups through our resolver.
 */
#ifndef DKIMV_H
#define DKIMV_H

#include <stdbool.h>
#include <stddef.h>

#include "dns.h"
#include "msg.h"

enum dkimv_result {
	DKIMVR_NONE, /* no signature */
	DKIMVR_PASS,
	DKIMVR_FAIL,	  /* bad signature or body hash */
	DKIMVR_NEUTRAL,	  /* signature not checked (cap reached, ...) */
	DKIMVR_POLICY,	  /* verified but not acceptable: sha1, small key */
	DKIMVR_TEMPERROR, /* key lookup: DNS temporary error */
	DKIMVR_PERMERROR, /* malformed signature, no key, revoked key */
};

struct dkimv_sig {
	enum dkimv_result result;
	char domain[256];   /* d= */
	char selector[128]; /* s= */
	char algo[32];	    /* "rsa-sha256", "ed25519-sha256", ... */
	char b[16];	    /* the first 8 characters of b= */
	unsigned keybits;
	bool partial_body; /* l= shorter than the body */
	char reason[128];
};

#define DKIMV_MAX_SIGS 16

struct dkimv_report {
	enum dkimv_result result; /* the best of the signatures */
	size_t nsigs;
	struct dkimv_sig sigs[DKIMV_MAX_SIGS];
	char error[256]; /* a failure before any signature was checked */
};

struct dkimv;

/*
 * A verifier sharing resolver d (not owned). min_key_bits: smaller keys
 * give policy; max_sigs: signatures checked per message (at most
 * DKIMV_MAX_SIGS), the rest are neutral.
 */
int dkimv_new(struct dns *d, unsigned min_key_bits, unsigned max_sigs,
	      struct dkimv **out, char *err, size_t errlen);
void dkimv_free(struct dkimv *v);
/* Verifies every signature of m (headers and body as received). */
void dkimv_verify(struct dkimv *v, const struct msg *m, struct dkimv_report *r);
const char *dkimv_result_name(enum dkimv_result r);

#endif
