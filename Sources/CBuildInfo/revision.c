#include "CBuildInfo.h"

/* revision.h is generated (scripts/build-info.sh) and not in git. Only this file
   includes it, so a new revision recompiles one C file and relinks: no Swift
   module is rebuilt. The script touches this file whenever it rewrites the
   header. */
#if __has_include("revision.h")
#include "revision.h"
#endif

#ifndef RUNFEED_REVISION
#define RUNFEED_REVISION "unknown"
#endif

const char *runfeed_build_revision(void) { return RUNFEED_REVISION; }
