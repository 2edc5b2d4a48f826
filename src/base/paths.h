/* base/paths.h — where basalt keeps its state, and creating directories.
 *
 * Owns the one rule for the data directory, which every command that reads
 * or writes state (serve, pull, the model cache) goes through:
 *   the --data override, else $BASALT_DATA, else $XDG_DATA_HOME/basalt (only
 *   when absolute: the XDG spec says relative values are invalid and must be
 *   ignored), else $HOME/.local/share/basalt. */
#ifndef BASALT_BASE_PATHS_H
#define BASALT_BASE_PATHS_H

#include <sys/types.h>

#include "base/error.h"

/* The data directory by the rule above; override may be NULL or "".  Only
 * resolves: nothing is created.  Caller frees *out. */
bs_status bs_data_dir(const char *override, char **out, bs_error *err);

/* mkdir -p: creates path and its missing parents with mode; BS_EIO names
 * the component that failed, or path when it exists but is no directory. */
bs_status bs_make_dirs(const char *path, mode_t mode, bs_error *err);

#endif
