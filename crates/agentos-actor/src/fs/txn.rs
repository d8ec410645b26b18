//! One filesystem change as one SQL transaction plus the matching cache
//! changes.
//!
//! An operation reads the committed cache, records what it changes here
//! (new inode rows, entry inserts and deletes, chunk statements), and
//! `finish` turns that into the body of a single `BEGIN IMMEDIATE; ...;
//! COMMIT;` batch and the [`Changes`] applied to the cache once the batch
//! has committed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::error::Errno;
use super::meta::{Changes, DirentChange, Ino, Inode, Meta};
use super::sql::{push_blob_literal, text_literal};

pub struct Txn<'m> {
    meta: &'m Meta,
    pub now: i64,
    inodes: BTreeMap<Ino, Option<Inode>>,
    dirents: Vec<DirentChange>,
    /// Chunk statements, emitted before entry and inode statements.
    chunk_sql: String,
}

impl<'m> Txn<'m> {
    pub fn new(meta: &'m Meta, now: i64) -> Self {
        Txn { meta, now, inodes: BTreeMap::new(), dirents: Vec::new(), chunk_sql: String::new() }
    }

    /// The inode as changed so far in this transaction.
    pub fn get(&self, ino: Ino) -> Result<Inode, Errno> {
        match self.inodes.get(&ino) {
            Some(Some(inode)) => Ok(inode.clone()),
            Some(None) => Err(Errno::ENOENT),
            None => self.meta.inode(ino).cloned(),
        }
    }

    /// Writes the whole row of an inode.
    pub fn put(&mut self, inode: Inode) {
        self.inodes.insert(inode.ino, Some(inode));
    }

    /// Deletes an inode and its chunks.
    pub fn delete_inode(&mut self, ino: Ino) {
        self.inodes.insert(ino, None);
    }

    pub fn link(&mut self, parent: Ino, name: &str, ino: Ino) {
        self.dirents.push(DirentChange::Insert { parent, name: name.to_owned(), ino });
    }

    pub fn unlink(&mut self, parent: Ino, name: &str) {
        self.dirents.push(DirentChange::Delete { parent, name: name.to_owned() });
    }

    /// Marks a directory's content as changed (mtime and ctime now).
    pub fn touch_dir(&mut self, dir: Ino) -> Result<(), Errno> {
        let mut node = self.get(dir)?;
        node.mtime_ns = self.now;
        node.ctime_ns = self.now;
        self.put(node);
        Ok(())
    }

    /// Adds `delta` to an inode's link count.
    pub fn add_nlink(&mut self, ino: Ino, delta: i32) -> Result<Inode, Errno> {
        let mut node = self.get(ino)?;
        node.nlink = node.nlink.checked_add_signed(delta).ok_or(Errno::EIO)?;
        self.put(node.clone());
        Ok(node)
    }

    /// Drops one link to a non-directory: deletes it with its content when
    /// no link is left, else updates its ctime.
    pub fn drop_link(&mut self, ino: Ino) -> Result<(), Errno> {
        let mut node = self.get(ino)?;
        if node.nlink <= 1 {
            self.delete_inode(ino);
        } else {
            node.nlink -= 1;
            node.ctime_ns = self.now;
            self.put(node);
        }
        Ok(())
    }

    /// Creates a directory entry for a new inode in `parent`.
    pub fn create(&mut self, parent: Ino, name: &str, inode: Inode) -> Result<(), Errno> {
        let ino = inode.ino;
        let is_dir = inode.is_dir();
        self.put(inode);
        self.link(parent, name, ino);
        if is_dir {
            self.add_nlink(parent, 1)?;
        }
        self.touch_dir(parent)
    }

    pub fn chunk_sql(&mut self) -> &mut String {
        &mut self.chunk_sql
    }

    /// The transaction body (without BEGIN/COMMIT) and its cache changes.
    pub fn finish(self) -> (String, Changes) {
        let mut sql = self.chunk_sql;
        for change in &self.dirents {
            match change {
                DirentChange::Insert { parent, name, ino } => {
                    let _ = writeln!(
                        sql,
                        "INSERT INTO fs_dirents (parent, name, ino) VALUES ({parent}, {}, {ino});",
                        text_literal(name)
                    );
                }
                DirentChange::Delete { parent, name } => {
                    let _ =
                        writeln!(sql, "DELETE FROM fs_dirents WHERE parent = {parent} AND name = {};", text_literal(name));
                }
            }
        }
        for (ino, inode) in &self.inodes {
            match inode {
                Some(inode) => push_inode_upsert(&mut sql, inode),
                None => {
                    let _ = writeln!(sql, "DELETE FROM fs_chunks WHERE ino = {ino};");
                    let _ = writeln!(sql, "DELETE FROM fs_inodes WHERE ino = {ino};");
                }
            }
        }
        let changes = Changes { dirents: self.dirents, inodes: self.inodes.into_iter().collect() };
        (sql, changes)
    }
}

/// Appends the statement that writes an inode's whole row.
pub fn push_inode_upsert(sql: &mut String, inode: &Inode) {
    let Inode { ino, kind, mode, uid, gid, size, nlink, atime_ns, mtime_ns, ctime_ns, birthtime_ns, target } = inode;
    let kind = *kind as i64;
    let _ = write!(
        sql,
        "INSERT INTO fs_inodes (ino, kind, mode, uid, gid, size, nlink, atime_ns, mtime_ns, ctime_ns, birthtime_ns, target) \
         VALUES ({ino}, {kind}, {mode}, {uid}, {gid}, {size}, {nlink}, {atime_ns}, {mtime_ns}, {ctime_ns}, {birthtime_ns}, "
    );
    match target {
        Some(target) => push_blob_literal(sql, target),
        None => sql.push_str("NULL"),
    }
    sql.push_str(
        ") ON CONFLICT (ino) DO UPDATE SET kind = excluded.kind, mode = excluded.mode, uid = excluded.uid, \
         gid = excluded.gid, size = excluded.size, nlink = excluded.nlink, atime_ns = excluded.atime_ns, \
         mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns, birthtime_ns = excluded.birthtime_ns, \
         target = excluded.target;\n",
    );
}
