#ifndef RUNFEED_CBUILDINFO_H
#define RUNFEED_CBUILDINFO_H

/* The source revision this binary was built from: the RUNFEED_REVISION that
   scripts/build-info.sh writes into revision.h (git-ignored) before a build, or
   "unknown" when no such file exists (a plain `swift build` of a fresh clone). */
const char *runfeed_build_revision(void);

#endif
