//! Opaque handles and the registry of live ones.
//!
//! A handle given to C is never a pointer to Rust memory: it is a token (a number that looks
//! like a pointer) looked up in a global registry of live objects. A freed, foreign or
//! wrong-kind handle is therefore detected by a failed lookup instead of being dereferenced,
//! and tokens are never reused, so a stale handle cannot alias a newer object. Objects are held
//! by `Arc`: a call in progress on one thread keeps its object alive even if another thread
//! frees the handle meanwhile (the free takes effect when that call returns).
use super::classmap::ClassMap;
use super::model::Model;
use super::status::{FfiError, FfiResult, SenetStatus};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// An opaque model handle (see `senet_model_create`).
pub struct SenetModel {
    _opaque: [u8; 0],
}

/// An opaque class map handle (see `senet_classmap_load`).
pub struct SenetClassMap {
    _opaque: [u8; 0],
}

/// A live object of the registry.
pub enum Object {
    /// A model (`SenetModel *`).
    Model(Arc<Model>),
    /// A class map (`SenetClassMap *`).
    ClassMap(Arc<ClassMap>),
}

/// The kinds of objects handles stand for: each has its opaque C type.
pub trait Kind: Sized {
    /// The opaque C type of its handles.
    type Handle;
    /// Its name in error messages, e.g. "model".
    const NAME: &'static str;
    /// Puts an object of this kind into the registry's enum.
    fn wrap(obj: Arc<Self>) -> Object;
    /// The object, if `obj` is of this kind.
    fn unwrap(obj: &Object) -> Option<&Arc<Self>>;
}

impl Kind for Model {
    type Handle = SenetModel;
    const NAME: &'static str = "model";
    fn wrap(obj: Arc<Self>) -> Object {
        Object::Model(obj)
    }
    fn unwrap(obj: &Object) -> Option<&Arc<Self>> {
        match obj {
            Object::Model(m) => Some(m),
            _ => None,
        }
    }
}

impl Kind for ClassMap {
    type Handle = SenetClassMap;
    const NAME: &'static str = "class map";
    fn wrap(obj: Arc<Self>) -> Object {
        Object::ClassMap(obj)
    }
    fn unwrap(obj: &Object) -> Option<&Arc<Self>> {
        match obj {
            Object::ClassMap(c) => Some(c),
            _ => None,
        }
    }
}

struct Registry {
    /// The next token. Tokens step by 16 from an odd-looking base, so that small integers and
    /// typical heap addresses are not live tokens.
    next: usize,
    live: HashMap<usize, Object>,
}

const FIRST_TOKEN: usize = 0x5E0E_7000;
const TOKEN_STEP: usize = 16;

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn with_registry<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    // The registry's operations do not panic halfway through an update, so a poisoned lock
    // (a panic elsewhere while it was held) still guards a consistent map.
    let mut guard = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    let reg = guard.get_or_insert_with(|| Registry {
        next: FIRST_TOKEN,
        live: HashMap::new(),
    });
    f(reg)
}

/// Registers `obj` and returns its new handle.
pub fn register<T: Kind>(obj: T) -> FfiResult<*mut T::Handle> {
    with_registry(|reg| {
        let token = reg.next;
        reg.next = reg
            .next
            .checked_add(TOKEN_STEP)
            .ok_or_else(|| FfiError::new(SenetStatus::Internal, "handle tokens exhausted"))?;
        reg.live.insert(token, T::wrap(Arc::new(obj)));
        // A token, not an address: it is never dereferenced (see the module docs).
        Ok(std::ptr::without_provenance_mut(token))
    })
}

fn invalid<T: Kind>(h: *const T::Handle) -> FfiError {
    FfiError::new(
        SenetStatus::InvalidHandle,
        format!(
            "{h:p} is not a live {} handle (freed, foreign, or another kind of handle)",
            T::NAME
        ),
    )
}

/// The object behind handle `h`. Errors: NULL, not a live handle of kind `T`.
pub fn get<T: Kind>(h: *const T::Handle, what: &str) -> FfiResult<Arc<T>> {
    if h.is_null() {
        return Err(FfiError::new(
            SenetStatus::NullPointer,
            format!("{what} is NULL"),
        ));
    }
    with_registry(|reg| {
        reg.live
            .get(&h.addr())
            .and_then(T::unwrap)
            .cloned()
            .ok_or_else(|| invalid::<T>(h))
    })
}

/// Removes handle `h` from the registry; the object is dropped when no call still uses it.
/// NULL is a no-op. Errors: not a live handle of kind `T` (e.g. freed twice).
pub fn release<T: Kind>(h: *mut T::Handle) -> FfiResult {
    if h.is_null() {
        return Ok(());
    }
    let removed = with_registry(|reg| match reg.live.get(&h.addr()).and_then(T::unwrap) {
        Some(_) => reg.live.remove(&h.addr()),
        None => None,
    });
    // Dropped outside the registry lock: freeing a model takes a while (its thread pool).
    match removed {
        Some(obj) => {
            drop(obj);
            Ok(())
        }
        None => Err(invalid::<T>(h)),
    }
}
