/*
 * fuzz_conf.c: conf_load on the input as an edmilter.conf, then the
 * queries the daemon makes of a loaded configuration.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "conf.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet_log();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const addrs[] = {"127.0.0.1", "10.1.2.3", "::1",
					    "2001:db8::1", "192.0.2.1", "bad"};
	static const char *const keys[] = {"Socket", "InternalHosts",
					   "ScoreReject", "nosuchkey"};
	struct errlist errs = {0};
	struct conf *c = NULL;
	char where[512];
	int rc;

	rc = conf_load(fuzz_file(data, size), &c, &errs);
	FUZZ_CHECK((rc == 0) == (c != NULL));
	FUZZ_CHECK(rc == 0 || errs.n > 0);
	for (size_t i = 0; i < errs.n; i++)
		FUZZ_CHECK(errs.lines[i] != NULL && strlen(errs.lines[i]) > 0);
	if (c != NULL) {
		(void)conf_any_set(c);
		for (size_t i = 0; i < sizeof(keys) / sizeof(*keys); i++)
			conf_where(c, keys[i], where, sizeof(where));
		for (size_t i = 0; i < sizeof(addrs) / sizeof(*addrs); i++)
			(void)conf_is_internal(c, addrs[i]);
		FUZZ_CHECK(c->socket != NULL && c->authserv_id != NULL);
		/* In range, hence not NaN either. */
		FUZZ_CHECK(c->score_tag >= -1000 && c->score_tag <= 1000000);
		FUZZ_CHECK(c->score_quarantine >= -1000 &&
			   c->score_quarantine <= 1000000);
		FUZZ_CHECK(c->score_reject >= -1000 &&
			   c->score_reject <= 1000000);
		FUZZ_CHECK(c->milter_timeout >= 10 && c->mime_max_depth >= 1);
		conf_free(c);
	}
	errlist_free(&errs);
	return 0;
}
