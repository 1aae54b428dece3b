#ifndef RUNFEED_CHIREDIS_SHIM_H
#define RUNFEED_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#endif
