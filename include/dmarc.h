/*
 * dmarc.h: DMARC (RFC 7489) with libopendmarc, on the SPF and DKIM results
 * this process computed itself, never on headers another filter wrote.
 */
#ifndef DMARC_H_EDM
#define DMARC_H_EDM

#include <stdbool.h>
#include <stddef.h>

#include "dkimv.h"
#include "dns.h"
#include "msg.h"
#include "spf.h"

enum dmarc_result {
	DMARCR_NONE, /* no policy published */
	DMARCR_PASS,
	DMARCR_FAIL,
	DMARCR_TEMPERROR,
	DMARCR_PERMERROR, /* no or unusable From, bad record */
};

enum dmarc_disposition {
	DMARCD_NONE,
	DMARCD_QUARANTINE,
	DMARCD_REJECT,
};

/* From domains evaluated; a message with more fails under p=reject. */
#define DMARC_MAX_FROM 32

struct dmarc_check {
	enum dmarc_result result;
	char from_domain[256];
	char policy[16]; /* the published p= or sp= taken; "" for none */
	enum dmarc_disposition disposition; /* after pct= */
	bool spf_aligned, dkim_aligned;
	char reason[256];
};

/* Once per process: the public suffix list for organisational domains. */
int dmarc_global_init(const char *psl, char *err, size_t errlen);

/*
 * The domains of every address of every From header, lower case, each
 * once (at most max; max + 1 when there were more); *unusable tells
 * whether some From header or address could not be parsed as a client
 * shows it (its "@domain" parts are then taken anyway). Returns how many
 * domains.
 */
int dmarc_from_domains(const struct msg *m, char out[][256], size_t max,
		       bool *unusable);

/*
 * Evaluates the From domain's policy. spf is the MAIL FROM result (the
 * HELO result for the null sender) and spf_domain its domain.
 */
void dmarc_check(struct dns *d, const struct msg *m,
		 const struct spf_check *spf, const struct dkimv_report *dk,
		 struct dmarc_check *r);
const char *dmarc_result_name(enum dmarc_result r);
const char *dmarc_disposition_name(enum dmarc_disposition d);

#endif
