/*
 * mlfi.h: the libmilter callbacks.
 */
#ifndef MLFI_H
#define MLFI_H

#include <libmilter/mfapi.h>

extern struct smfiDesc mlfi_desc;
/* Messages between MAIL FROM and their end, for a clean stop. */
int mlfi_in_flight(void);
/* From now on, new connections are turned away (the MTA tempfails). */
void mlfi_drain(void);
/* Connections whose state is not yet freed, for a clean stop. */
int mlfi_connections(void);

#endif
