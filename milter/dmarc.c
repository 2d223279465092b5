/*
 * dmarc.c: DMARC with libopendmarc. The From domains are found with GMime's
 * address parser (display names, quoted local parts, comments, groups,
 * several addresses and headers); the policy record is looked up through
 * our resolver and handed to libopendmarc, which does the alignment on the
 * public suffix list; pct= sampling is ours. Only this process's own SPF
 * and DKIM results are stored, so a forged or HELO-only Received-SPF
 * header can never make a pass.
 *
 * Logs nothing: the pipeline logs the result with the queue id.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include <gmime/gmime.h>
#include <opendmarc/dmarc.h>

#include "dmarc.h"
#include "mime.h"
#include "util.h"

/* In libopendmarc, not in its header: the organisational domain. */
int opendmarc_get_tld(u_char *domain, u_char *tld, size_t tld_len);

int
dmarc_global_init(const char *psl, char *err, size_t errlen)
{
	static OPENDMARC_LIB_T lib;
	FILE *fp;

	mime_init();
	if ((fp = fopen(psl, "r")) == NULL) {
		snprintf(err, errlen, "%s: cannot read the public suffix list",
			 psl);
		return -1;
	}
	fclose(fp);
	memset(&lib, 0, sizeof(lib));
	lib.tld_type = OPENDMARC_TLD_TYPE_MOZILLA;
	snprintf((char *)lib.tld_source_file, sizeof(lib.tld_source_file), "%s",
		 psl);
	if (opendmarc_policy_library_init(&lib) != DMARC_PARSE_OKAY) {
		snprintf(err, errlen, "libopendmarc: cannot initialise with %s",
			 psl);
		return -1;
	}
	return 0;
}

/* Adds the domain of addr to out unless already there; -1 if none. */
static int
dmarc_add_domain(const char *addr, char out[][256], size_t max, size_t *n)
{
	const char *at = addr ? strrchr(addr, '@') : NULL;
	char dom[256];
	size_t len;

	if (at == NULL || at[1] == '\0')
		return -1;
	snprintf(dom, sizeof(dom), "%s", at + 1);
	len = strlen(dom);
	while (len > 0 && dom[len - 1] == '.')
		dom[--len] = '\0';
	if (len == 0 ||
	    strspn(dom, "abcdefghijklmnopqrstuvwxyz"
			"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != len)
		return -1;
	for (char *p = dom; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p += 'a' - 'A';
	for (size_t i = 0; i < *n && i < max; i++)
		if (strcmp(out[i], dom) == 0)
			return 0;
	if (*n < max)
		snprintf(out[*n], 256, "%s", dom);
	if (*n <= max)
		(*n)++;
	return 0;
}

/*
 * What a lenient reader would take as domains: every "@" followed by
 * domain characters, whatever the syntax around it. Used when the header
 * does not parse, so that a broken From cannot hide its domain.
 */
static void
dmarc_scrape(const char *value, char out[][256], size_t max, size_t *n)
{
	char addr[300];

	for (const char *p = strchr(value, '@'); p != NULL;
	     p = strchr(p + 1, '@')) {
		size_t k = strspn(p + 1, "abcdefghijklmnopqrstuvwxyz"
					 "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
					 "0123456789.-_");

		if (k == 0 || k > 253)
			continue;
		snprintf(addr, sizeof(addr), "@%.*s", (int)k, p + 1);
		dmarc_add_domain(addr, out, max, n);
	}
}

/* Walks an address list, groups included, noting unusable addresses. */
static void
dmarc_walk(InternetAddressList *l, char out[][256], size_t max, size_t *n,
	   bool *unusable)
{
	int count = internet_address_list_length(l);

	for (int i = 0; i < count; i++) {
		InternetAddress *ia = internet_address_list_get_address(l, i);
		InternetAddressList *members;

		if (INTERNET_ADDRESS_IS_GROUP(ia)) {
			members = internet_address_group_get_members(
			    INTERNET_ADDRESS_GROUP(ia));
			if (members != NULL)
				dmarc_walk(members, out, max, n, unusable);
		} else if (dmarc_add_domain(
			       internet_address_mailbox_get_idn_addr(
				   INTERNET_ADDRESS_MAILBOX(ia)),
			       out, max, n) < 0) {
			*unusable = true;
		}
	}
}

int
dmarc_from_domains(const struct msg *m, char out[][256], size_t max,
		   bool *unusable)
{
	size_t n = 0;

	*unusable = false;
	mime_init();
	for (size_t i = 0; i < m->nhdrs; i++) {
		InternetAddressList *l;
		bool bad = false;

		if (strcasecmp(m->hdrs[i].name, "From") != 0)
			continue;

		l = internet_address_list_parse(NULL, m->hdrs[i].value);
		if (l == NULL || internet_address_list_length(l) == 0)
			bad = true;
		else
			dmarc_walk(l, out, max, &n, &bad);
		if (l != NULL)
			g_object_unref(l);

		/* GMime gave up somewhere: take every domain there is. */
		if (bad) {
			*unusable = true;
			dmarc_scrape(m->hdrs[i].value, out, max, &n);
		}
	}
	return (int)n;
}

/*
 * The DMARC record of domain into rec: 1 found, 0 none (no record, or
 * more than one), -1 temporary DNS error.
 */
static int
dmarc_lookup(struct dns *d, const char *domain, char *rec, size_t len)
{
	struct ub_result *res;
	char name[300];
	int found = 0;

	snprintf(name, sizeof(name), "_dmarc.%s", domain);
	switch (dns_query(d, name, 16 /* TXT */, &res)) {
	case DNS_OK:
		break;
	case DNS_TEMPFAIL:
		return -1;
	default:
		return 0;
	}
	for (int i = 0; res->data[i] != NULL; i++) {
		char *t = dns_txt(res, i);

		if (t != NULL && strncasecmp(t, "v=DMARC1", 8) == 0 &&
		    (t[8] == ';' || t[8] == ' ' || t[8] == '\0')) {
			snprintf(rec, len, "%s", t);
			found++;
		}
		free(t);
	}
	ub_resolve_free(res);
	return found == 1 ? 1 : 0;
}

/* Relaxed alignment: the same organisational domain. */
static bool
dmarc_aligns(const char *from, const char *other)
{
	if (other == NULL || *other == '\0')
		return false;
	return opendmarc_policy_check_alignment((u_char *)from, (u_char *)other,
						DMARC_RECORD_A_RELAXED) == 0;
}

static int
dmarc_spf_outcome(enum spf_result r)
{
	switch (r) {
	case SPFR_PASS:
		return DMARC_POLICY_SPF_OUTCOME_PASS;
	case SPFR_FAIL:
	case SPFR_SOFTFAIL:
		return DMARC_POLICY_SPF_OUTCOME_FAIL;
	case SPFR_TEMPERROR:
		return DMARC_POLICY_SPF_OUTCOME_TMPFAIL;
	default:
		return DMARC_POLICY_SPF_OUTCOME_NONE;
	}
}

/* A signature with l= shorter than the body never counts as a pass. */
static int
dmarc_dkim_outcome(const struct dkimv_sig *s)
{
	switch (s->result) {
	case DKIMVR_PASS:
		return s->partial_body ? DMARC_POLICY_DKIM_OUTCOME_NONE
				       : DMARC_POLICY_DKIM_OUTCOME_PASS;
	case DKIMVR_TEMPERROR:
		return DMARC_POLICY_DKIM_OUTCOME_TMPFAIL;
	case DKIMVR_NONE:
	case DKIMVR_NEUTRAL:
		return DMARC_POLICY_DKIM_OUTCOME_NONE;
	default:
		return DMARC_POLICY_DKIM_OUTCOME_FAIL;
	}
}

/* A policy letter of libopendmarc as a word. */
static const char *
dmarc_policy_word(int p)
{
	return p == DMARC_RECORD_P_REJECT	? "reject"
	       : p == DMARC_RECORD_P_QUARANTINE ? "quarantine"
	       : p == DMARC_RECORD_P_NONE	? "none"
						: "";
}

/* Feeds the results and the record to libopendmarc and reads its answer. */
static void
dmarc_enforce(const struct msg *m, const char *domain, const char *record,
	      const char *org, const struct spf_check *spf,
	      const struct dkimv_report *dk, struct dmarc_check *r)
{
	DMARC_POLICY_T *p;
	int st, dal = 0, sal = 0, pct = 100, pol = 0;
	const char *ip = m->client_addr[0] ? m->client_addr : "0.0.0.0";

	p = opendmarc_policy_connect_init((u_char *)ip,
					  strchr(ip, ':') != NULL);
	if (p == NULL) {
		r->result = DMARCR_TEMPERROR;
		snprintf(r->reason, sizeof(r->reason), "out of memory");
		return;
	}
	opendmarc_policy_store_from_domain(p, (u_char *)domain);
	for (size_t i = 0; dk != NULL && i < dk->nsigs; i++)
		opendmarc_policy_store_dkim(p, (u_char *)dk->sigs[i].domain,
					    (u_char *)dk->sigs[i].selector,
					    dmarc_dkim_outcome(&dk->sigs[i]),
					    NULL);
	if (spf != NULL && spf->domain[0] != '\0')
		opendmarc_policy_store_spf(
		    p, (u_char *)spf->domain, dmarc_spf_outcome(spf->result),
		    m->from && *m->from ? DMARC_POLICY_SPF_ORIGIN_MAILFROM
					: DMARC_POLICY_SPF_ORIGIN_HELO,
		    NULL);
	if (opendmarc_policy_store_dmarc(p, (u_char *)record, (u_char *)domain,
					 (u_char *)org) != DMARC_PARSE_OKAY) {
		r->result = DMARCR_PERMERROR;
		snprintf(r->reason, sizeof(r->reason),
			 "unusable DMARC record for %s", domain);
		opendmarc_policy_connect_shutdown(p);
		return;
	}
	st = opendmarc_get_policy_to_enforce(p);
	opendmarc_policy_fetch_alignment(p, &dal, &sal);
	opendmarc_policy_fetch_pct(p, &pct);
	if (opendmarc_get_policy_token_used(p) == DMARC_USED_POLICY_IS_SP)
		opendmarc_policy_fetch_sp(p, &pol);
	else
		opendmarc_policy_fetch_p(p, &pol);
	opendmarc_policy_connect_shutdown(p);

	snprintf(r->policy, sizeof(r->policy), "%s", dmarc_policy_word(pol));
	r->dkim_aligned = dal == DMARC_POLICY_DKIM_ALIGNMENT_PASS;
	r->spf_aligned = sal == DMARC_POLICY_SPF_ALIGNMENT_PASS;
	if (st == DMARC_POLICY_PASS) {
		r->result = DMARCR_PASS;
		snprintf(r->reason, sizeof(r->reason), "%s aligned",
			 r->dkim_aligned ? "DKIM" : "SPF");
		return;
	}
	r->result = DMARCR_FAIL;
	r->disposition = st == DMARC_POLICY_REJECT	 ? DMARCD_REJECT
			 : st == DMARC_POLICY_QUARANTINE ? DMARCD_QUARANTINE
							 : DMARCD_NONE;
	snprintf(r->reason, sizeof(r->reason), "no aligned SPF or DKIM pass");

	/* pct=: a message not sampled gets the next milder policy. */
	if (pct < 100 && r->disposition != DMARCD_NONE &&
	    (int)arc4random_uniform(100) >= pct) {
		r->disposition--;
		snprintf(r->reason, sizeof(r->reason),
			 "no aligned SPF or DKIM pass; not sampled (pct=%d)",
			 pct);
	}
}

/*
 * Were some results unknown (DNS, limits)? Then a fail is not sure, but
 * only where the unknown result could have aligned with the From domain:
 * a broken signature of another domain must not turn a spoof into a
 * tempfail.
 */
static bool
dmarc_unsure(const struct msg *m, const char *from, const struct spf_check *spf,
	     const struct dkimv_report *dk)
{
	if (m->truncated)
		return true;
	if (spf != NULL && spf->result == SPFR_TEMPERROR &&
	    dmarc_aligns(from, spf->domain))
		return true;
	if (dk == NULL)
		return false;
	if (dk->result == DKIMVR_NEUTRAL && dk->nsigs == 0)
		return true;
	for (size_t i = 0; i < dk->nsigs; i++)
		if (dk->sigs[i].result == DKIMVR_TEMPERROR &&
		    dmarc_aligns(from, dk->sigs[i].domain))
			return true;
	return false;
}

/* One From domain: its record, or its organisational domain's. */
static void
dmarc_one(struct dns *d, const struct msg *m, const char *domain,
	  const struct spf_check *spf, const struct dkimv_report *dk,
	  struct dmarc_check *r)
{
	char record[1024], org[256] = "";
	int found;

	snprintf(r->from_domain, sizeof(r->from_domain), "%s", domain);
	found = dmarc_lookup(d, domain, record, sizeof(record));
	if (found == 0 &&
	    opendmarc_get_tld((u_char *)domain, (u_char *)org, sizeof(org)) ==
		0 &&
	    org[0] != '\0' && strcasecmp(org, domain) != 0)
		found = dmarc_lookup(d, org, record, sizeof(record));
	if (found < 0) {
		r->result = DMARCR_TEMPERROR;
		snprintf(r->reason, sizeof(r->reason),
			 "DNS error looking up the policy of %s", domain);
		return;
	}
	if (found == 0) {
		r->result = DMARCR_NONE;
		snprintf(r->reason, sizeof(r->reason), "no DMARC record");
		return;
	}
	dmarc_enforce(m, domain, record,
		      org[0] && strcasecmp(org, domain) ? org : NULL, spf, dk,
		      r);
	if (r->result == DMARCR_FAIL && dmarc_unsure(m, domain, spf, dk)) {
		r->result = DMARCR_TEMPERROR;
		snprintf(r->reason, sizeof(r->reason),
			 "SPF or DKIM could not be checked (DNS or limits)");
	}
}

void
dmarc_check(struct dns *d, const struct msg *m, const struct spf_check *spf,
	    const struct dkimv_report *dk, struct dmarc_check *r)
{
	char doms[DMARC_MAX_FROM][256];
	struct dmarc_check one;
	bool unusable;
	int n;

	memset(r, 0, sizeof(*r));
	n = dmarc_from_domains(m, doms, DMARC_MAX_FROM, &unusable);
	if (n == 0) {
		r->result = DMARCR_PERMERROR;
		snprintf(r->reason, sizeof(r->reason), "%s",
			 unusable ? "From header without a usable address"
				  : "no From header");
		return;
	}
	if (n > DMARC_MAX_FROM) {
		r->result = DMARCR_FAIL;
		r->disposition = DMARCD_REJECT;
		snprintf(r->from_domain, sizeof(r->from_domain), "%s", doms[0]);
		snprintf(r->policy, sizeof(r->policy), "reject");
		snprintf(r->reason, sizeof(r->reason),
			 "more than %d From domains", DMARC_MAX_FROM);
		return;
	}
	/* One domain, however badly written: the one a client shows. */
	if (n == 1) {
		dmarc_one(d, m, doms[0], spf, dk, r);
		return;
	}

	/* Several From domains: a failure, under the strictest policy. */
	r->result = DMARCR_FAIL;
	snprintf(r->from_domain, sizeof(r->from_domain), "%s", doms[0]);
	snprintf(r->reason, sizeof(r->reason), "%d different From domains", n);
	for (int i = 0; i < n; i++) {
		memset(&one, 0, sizeof(one));
		dmarc_one(d, m, doms[i], spf, dk, &one);
		if (one.result == DMARCR_TEMPERROR) {
			*r = one;
			return;
		}
		if (one.policy[0] != '\0' &&
		    (r->policy[0] == '\0' ||
		     strcmp(one.policy, "reject") == 0 ||
		     (strcmp(one.policy, "quarantine") == 0 &&
		      strcmp(r->policy, "none") == 0)))
			snprintf(r->policy, sizeof(r->policy), "%s",
				 one.policy);
	}
	r->disposition = strcmp(r->policy, "reject") == 0 ? DMARCD_REJECT
			 : strcmp(r->policy, "quarantine") == 0
			     ? DMARCD_QUARANTINE
			     : DMARCD_NONE;
}

const char *
dmarc_result_name(enum dmarc_result r)
{
	static const char *names[] = {"none", "pass", "fail", "temperror",
				      "permerror"};

	return names[r];
}

const char *
dmarc_disposition_name(enum dmarc_disposition d)
{
	static const char *names[] = {"none", "quarantine", "reject"};

	return names[d];
}
