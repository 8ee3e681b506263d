"""Errors that are reported to the user in one line, without a traceback.

Raise a subclass of ``UserFacingError`` for bad input (a flag, a file, a config value) or
for a run that must stop (a non-finite loss); its message names what is wrong and how to
fix it. Entry points turn it into ``error: <message>`` on stderr and a non-zero exit.
"""

import errno


class UserFacingError(Exception):
    """An error whose message is the whole story: shown in one line, no traceback."""


class ConfigError(UserFacingError, ValueError):
    """An invalid config value; the message names the field."""


class DataError(UserFacingError, ValueError):
    """A dataset, split, file or folder that cannot be used; the message names it."""


class CheckpointError(UserFacingError):
    """No checkpoint could be restored, or one does not match the run."""


class NonFiniteError(UserFacingError, FloatingPointError):
    """Training produced a non-finite value; the message names the epoch, step and metric."""


# Causes of a failed read or write that the user fixes outside the program (space,
# permissions, a read-only or failing file system): reported in one line naming the file.
USER_FIXABLE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                       errno.EIO, errno.ENOTDIR, errno.EISDIR)  # fmt: skip
