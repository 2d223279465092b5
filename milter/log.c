/*
 * log.c: where log lines go. With -f (or in the offline scanner) they go to
 * stderr with a time stamp, otherwise to syslog with the configured
 * facility. Every line about a message starts with its queue id.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"

static int log_stderr = 1;
static int log_level = LOG_INFO;

static const struct {
	const char *name;
	int value;
} log_facilities[] = {
    {"mail", LOG_MAIL},	    {"daemon", LOG_DAEMON}, {"user", LOG_USER},
    {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2},
    {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},
    {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7},
};

int
log_facility_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(log_facilities) / sizeof(*log_facilities);
	     i++)
		if (strcasecmp(name, log_facilities[i].name) == 0)
			return log_facilities[i].value;
	return -1;
}

void
log_init(const char *ident, int facility, int to_stderr)
{
	log_stderr = to_stderr;
	if (!to_stderr)
		openlog(ident, LOG_PID | LOG_NDELAY, facility);
}

void
log_set_level(int level)
{
	log_level = level;
}

static void
log_vwrite(int prio, const char *prefix, const char *fmt, va_list ap)
{
	char line[2048];
	size_t n = 0;

	if (prio > log_level)
		return;
	if (prefix != NULL)
		n = (size_t)snprintf(line, sizeof(line), "%s: ", prefix);
	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (log_stderr) {
		struct timespec ts;
		struct tm tm;
		char stamp[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		/* One fprintf per line: stdio locks the stream for it. */
		fprintf(stderr, "%s.%03ld edmilter: %s\n", stamp,
			ts.tv_nsec / 1000000, line);
	} else {
		syslog(prio, "%s", line);
	}
}

void
log_msg(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(prio, NULL, fmt, ap);
	va_end(ap);
}

void
log_qid(int prio, const char *qid, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(prio, qid != NULL && *qid ? qid : "NOQUEUE", fmt, ap);
	va_end(ap);
}
