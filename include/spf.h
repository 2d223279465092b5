/*
 * spf.h: SPF (RFC 7208) with libspf2, its DNS through our resolver.
 */
#ifndef SPF_H
#define SPF_H

#include <stdbool.h>
#include <stddef.h>

#include "dns.h"

enum spf_result {
	SPFR_NONE,
	SPFR_NEUTRAL,
	SPFR_PASS,
	SPFR_FAIL,
	SPFR_SOFTFAIL,
	SPFR_TEMPERROR,
	SPFR_PERMERROR,
};

struct spf_check {
	enum spf_result result;
	char domain[256];	/* the identity's domain that was checked */
	char reason[256];	/* why, for the log and the header comment */
	char received_spf[512]; /* a Received-SPF value, without the name */
};

struct spf;

/*
 * A checker sharing resolver d (not owned). receiver: our host name, for
 * Received-SPF and the %{r} macro.
 */
int spf_new(struct dns *d, const char *receiver, struct spf **out, char *err,
	    size_t errlen);
void spf_free(struct spf *s);

/* Is helo a name (or address literal) fit to check and to print? */
bool spf_helo_valid(const char *helo);

/*
 * The HELO identity: ip is the client address (IPv4, IPv6 or IPv4-mapped
 * IPv6). An invalid HELO gives none.
 */
void spf_check_helo(struct spf *s, const char *ip, const char *helo,
		    struct spf_check *r);
/*
 * The MAIL FROM identity; from is the bare envelope sender, "" for the
 * null sender (then checked as postmaster@helo).
 */
void spf_check_mailfrom(struct spf *s, const char *ip, const char *helo,
			const char *from, struct spf_check *r);
const char *spf_result_name(enum spf_result r);

#endif
