#ifndef RUNFEED_CPOSTGRES_SHIM_H
#define RUNFEED_CPOSTGRES_SHIM_H
#include <postgresql/libpq-fe.h>
#endif
