//! Loading an ABI v13 plugin: `dlopen`, all ten symbols resolved up front,
//! magic and version checked before anything else runs, `plugin_init` called
//! once per path. Loaded libraries are never unloaded: factories and running
//! actors point into them for the life of the process.

use std::collections::HashMap;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result, bail};
use rivet_actor_plugin_abi::{
    BorrowedBuf, CompletionFn, HostVtable, OwnedBuf, RIVET_ACTOR_ABI_MAGIC, RIVET_ACTOR_ABI_VERSION, symbols,
};

pub type MagicFn = extern "C" fn() -> u64;
pub type InitFn = extern "C" fn(out_err: *mut OwnedBuf) -> *mut c_void;
pub type FactoryNewFn =
    extern "C" fn(plugin: *mut c_void, config: BorrowedBuf, sidecar: BorrowedBuf, out_err: *mut OwnedBuf) -> *mut c_void;
pub type RunFn =
    extern "C" fn(factory: *mut c_void, host: *const HostVtable, done: CompletionFn, user_data: *mut c_void) -> *mut c_void;
pub type InstanceFn = extern "C" fn(instance: *mut c_void);

/// The resolved exports of one plugin library.
pub struct Symbols {
    pub run: RunFn,
    pub cancel: InstanceFn,
    pub grace_deadline: InstanceFn,
    pub instance_free: InstanceFn,
    pub factory_new: FactoryNewFn,
    pub factory_free: InstanceFn,
    pub plugin_shutdown: InstanceFn,
}

/// A loaded, initialised plugin library.
pub struct LoadedPlugin {
    pub path: PathBuf,
    pub symbols: Symbols,
    handle: PluginHandle,
    _library: libloading::Library,
}

/// The opaque pointer `plugin_init` returned.
struct PluginHandle(*mut c_void);
// SAFETY: the ABI lets the host call plugin entry points from any thread;
// the pointer itself is only passed back to the plugin.
unsafe impl Send for PluginHandle {}
// SAFETY: as above; we never dereference it.
unsafe impl Sync for PluginHandle {}

/// One actor type built from a plugin (`factory_new`).
pub struct PluginFactory {
    pub plugin: Arc<LoadedPlugin>,
    handle: PluginHandle,
}

impl PluginFactory {
    pub fn as_ptr(&self) -> *mut c_void {
        self.handle.0
    }
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<LoadedPlugin>>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<LoadedPlugin>>>> = OnceLock::new();
    LOADED.get_or_init(Default::default)
}

/// Takes the message a plugin wrote into an `out_err` slot.
///
/// # Safety
/// `slot` must hold a valid `OwnedBuf` (pre-set empty, possibly replaced by
/// the plugin); it is consumed here.
unsafe fn take_err(slot: OwnedBuf) -> String {
    // SAFETY: guaranteed by this function's contract.
    let bytes = unsafe { slot.into_vec() };
    if bytes.is_empty() { "no message".into() } else { String::from_utf8_lossy(&bytes).into_owned() }
}

/// Loads (or returns the already loaded) plugin at `path`.
pub fn load(path: &Path) -> Result<Arc<LoadedPlugin>> {
    let path = path.canonicalize().with_context(|| format!("plugin not found: {}", path.display()))?;
    let mut loaded = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(plugin) = loaded.get(&path) {
        return Ok(plugin.clone());
    }
    // SAFETY: loading a library runs its initialisers; we only load files
    // the operator named as plugins.
    let library = unsafe { libloading::Library::new(&path) }
        .with_context(|| format!("dlopen {}", path.display()))?;
    // SAFETY (all `sym` calls): each symbol is declared by ABI v13 with the
    // exact signature of the type we read it as.
    unsafe fn sym<T: Copy>(library: &libloading::Library, name: &[u8], path: &Path) -> Result<T> {
        // SAFETY: guaranteed by this function's contract (the ABI fixes `T`).
        let symbol: libloading::Symbol<T> = unsafe { library.get(name) }.with_context(|| {
            format!(
                "{} is not an ABI v13 actor plugin: missing symbol `{}`",
                path.display(),
                String::from_utf8_lossy(&name[..name.len() - 1])
            )
        })?;
        Ok(*symbol)
    }
    // SAFETY: see `sym`; magic and version are read before any other call.
    let (magic, version) = unsafe {
        (sym::<MagicFn>(&library, symbols::ABI_MAGIC, &path)?, sym::<MagicFn>(&library, symbols::ABI_VERSION, &path)?)
    };
    if magic() != RIVET_ACTOR_ABI_MAGIC {
        bail!("{} is not a RivetKit actor plugin (bad ABI magic {:#x})", path.display(), magic());
    }
    if version() != RIVET_ACTOR_ABI_VERSION {
        bail!(
            "{} speaks actor-plugin ABI v{}, this host speaks v{}",
            path.display(),
            version(),
            RIVET_ACTOR_ABI_VERSION
        );
    }
    // SAFETY: see `sym`.
    let (init, symbols) = unsafe {
        (
            sym::<InitFn>(&library, symbols::PLUGIN_INIT, &path)?,
            Symbols {
                run: sym(&library, symbols::RUN, &path)?,
                cancel: sym(&library, symbols::CANCEL, &path)?,
                grace_deadline: sym(&library, symbols::GRACE_DEADLINE, &path)?,
                instance_free: sym(&library, symbols::INSTANCE_FREE, &path)?,
                factory_new: sym(&library, symbols::FACTORY_NEW, &path)?,
                factory_free: sym(&library, symbols::FACTORY_FREE, &path)?,
                plugin_shutdown: sym(&library, symbols::PLUGIN_SHUTDOWN, &path)?,
            },
        )
    };
    let mut err = OwnedBuf::empty();
    let handle = init(&mut err);
    if handle.is_null() {
        // SAFETY: `err` is the slot we pre-set; the plugin may have replaced it.
        let message = unsafe { take_err(err) };
        bail!("{}: plugin init failed: {message}", path.display());
    }
    // SAFETY: init succeeded; a plugin may still have written (and we must free) a buffer.
    unsafe { err.free_self() };
    let plugin = Arc::new(LoadedPlugin { path: path.clone(), symbols, handle: PluginHandle(handle), _library: library });
    loaded.insert(path, plugin.clone());
    Ok(plugin)
}

impl LoadedPlugin {
    /// Builds one actor type (`factory_new`). The plugin copies both strings.
    pub fn factory(self: &Arc<Self>, config_json: &str, sidecar_path: &str) -> Result<Arc<PluginFactory>> {
        let mut err = OwnedBuf::empty();
        let ptr = (self.symbols.factory_new)(
            self.handle.0,
            BorrowedBuf::from_slice(config_json.as_bytes()),
            BorrowedBuf::from_slice(sidecar_path.as_bytes()),
            &mut err,
        );
        if ptr.is_null() {
            // SAFETY: `err` is the slot we pre-set; the plugin may have replaced it.
            let message = unsafe { take_err(err) };
            bail!("{}: factory_new failed: {message}", self.path.display());
        }
        // SAFETY: as in `load`.
        unsafe { err.free_self() };
        Ok(Arc::new(PluginFactory { plugin: self.clone(), handle: PluginHandle(ptr) }))
    }
}
