/*
 * log.h: syslog or stderr logging. Message lines start with the queue id.
 */
#ifndef LOG_H
#define LOG_H

#include <syslog.h>

void log_init(const char *ident, int facility, int to_stderr);
void log_set_level(int level);
int log_facility_parse(const char *name);
void log_msg(int prio, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A line about one message: "QID: text"; qid NULL logs "NOQUEUE". */
void log_qid(int prio, const char *qid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
