#ifndef RUNFEED_CFASTCGI_SHIM_H
#define RUNFEED_CFASTCGI_SHIM_H
#include <fcgiapp.h>
#endif
