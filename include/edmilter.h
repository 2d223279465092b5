/*
 * edmilter.h: names shared by every module of the filter.
 */
#ifndef EDMILTER_H
#define EDMILTER_H

#include "config.h"

#define EDM_NAME "edmilter"
#define EDM_VERSION PACKAGE_VERSION

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define EDM_DEFAULT_CONF "/etc/edmilter/edmilter.conf"

/* Size of the error buffers handed back through errstr out-parameters. */
#define EDM_ERRLEN 512

#endif
