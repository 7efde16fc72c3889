"""Deleting on the files back-end without losing a store that races the delete: a
record is taken only while it is still the file that was listed, something planted in a
record's place is set aside and looked at again, and an entry directory goes only once
no record is left in it (its component record put back if a store got there first).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets

from ..._storage import fsio as _fsio
from ..._storage.beneath import Directory, UnsafePath
from ...records import Entry, same_record
from ...stats import logger
from ._format import ANY_COMPONENT, COMPONENT_FILE, names, record_entry, records_in, saved_meta


def delete_if_unchanged(root: Directory, durable: bool, listed: Entry) -> bool:
    """Delete the record of `listed` if it is still that file (`same_record`, its
    inode held open throughout). A store may replace it between that check and the
    rename that takes it away: the rename then took the new record, which is linked
    back at once (unless a newer one has arrived since) and the entry kept."""
    entry_name, name = names(listed.key, listed.attribute_name)
    try:
        entry = root.subdirectory(entry_name)
    except (FileNotFoundError, UnsafePath):
        return False
    with entry:
        try:
            fd = entry.open_file(name)
        except FileNotFoundError:
            return False
        except UnsafePath:  # planted where the record belongs: damage, whatever is listed
            return remove_planted_record(root, entry, name, durable)
        try:
            held = os.fstat(fd)
            if not same_record(
                listed, record_entry(ANY_COMPONENT, name, held, os.pread(fd, 4096, 0))
            ):
                return False
            aside = f"{_fsio.TEMP_PREFIX}{secrets.token_hex(8)}"
            os.rename(name, aside, src_dir_fd=entry.fd, dst_dir_fd=entry.fd)
            moved = os.stat(aside, dir_fd=entry.fd, follow_symlinks=False)
            if (moved.st_dev, moved.st_ino) != (held.st_dev, held.st_ino):
                with contextlib.suppress(FileExistsError):  # a newer one came: keep it
                    os.link(aside, name, src_dir_fd=entry.fd, dst_dir_fd=entry.fd)
                entry.unlink(aside)
                return False
            entry.unlink(aside)
        finally:
            os.close(fd)
        remove_if_empty(root, entry, durable, saved_meta(entry))
    return True


def remove_planted_record(root: Directory, entry: Directory, name: str, durable: bool) -> bool:
    """Remove what was planted in a record's place: a link or special file itself (set
    aside first and looked at again, so a record stored there meanwhile is put back),
    an empty directory; a directory with something in it is reported and left."""
    if entry.kind(name) == "a directory":
        try:
            entry.rmdir(name)
        except FileNotFoundError:
            return False
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            logger.warning(
                "%s is a directory planted where a record belongs, and not empty: "
                "left alone; remove it by hand",
                os.path.join(entry.path, name),
            )
            return False
    else:
        aside = f"{_fsio.TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            os.rename(name, aside, src_dir_fd=entry.fd, dst_dir_fd=entry.fd)
        except FileNotFoundError:
            return False
        if entry.kind(aside) == "a regular file":  # a store's record arrived meanwhile
            with contextlib.suppress(FileExistsError):
                os.link(aside, name, src_dir_fd=entry.fd, dst_dir_fd=entry.fd)
            entry.unlink(aside)
            return False
        entry.unlink(aside)
    remove_if_empty(root, entry, durable, saved_meta(entry))
    return True


def remove_if_empty(
    root: Directory, entry: Directory, durable: bool, saved_meta: bytes | None = None
) -> None:
    """Remove the entry directory once no record is left in it."""
    if records_in(entry):
        return
    entry.unlink(COMPONENT_FILE)
    entry_name = os.path.basename(entry.path)
    try:
        root.rmdir(entry_name)
    except FileNotFoundError:
        return
    except OSError:  # not empty: a store got there first
        if saved_meta is not None and records_in(entry) and not entry.exists(COMPONENT_FILE):
            with contextlib.suppress(FileNotFoundError):
                entry.atomic_write(COMPONENT_FILE, [saved_meta], durable=durable)
