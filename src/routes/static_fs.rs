//! The file system as a static route sees it: tower-http's `ServeDir`
//! reads files only through this [`Backend`], which keeps every path it
//! opens (the requested file, `index.html`, and the precompressed `.br` /
//! `.gz` siblings) inside the route's folder after resolving symlinks, and
//! refuses any file holding a private key (`key_guard`), so Range
//! requests, conditional requests and precompressed answers get the same
//! guarantees as a plain GET.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncSeekExt, ReadBuf};
use tower_http::services::fs::{Backend, File};

use super::key_guard;

/// Precompressed siblings ServeDir may look for (`precompressed_br`,
/// `precompressed_gzip`).
const SIBLING_EXTENSIONS: [&str; 2] = ["br", "gz"];

/// A folder, confined: one per request (it records a refusal for the
/// response to report).
#[derive(Clone, Debug)]
pub struct Confined {
    root: Arc<PathBuf>,
    /// HEAD answers from metadata alone: check the content there too.
    head: bool,
    /// The file refused for holding a private key, if any.
    refused: Arc<Mutex<Option<PathBuf>>>,
}

impl Confined {
    /// `root` must be canonical (static folders are canonicalized at start).
    pub fn new(root: Arc<PathBuf>, head: bool) -> Self {
        Confined {
            root,
            head,
            refused: Arc::new(Mutex::new(None)),
        }
    }

    /// The file this request was refused for holding a private key.
    pub fn refused(&self) -> Option<PathBuf> {
        self.refused.lock().ok().and_then(|g| g.clone())
    }

    /// `path` with symlinks resolved, or NotFound when it leaves the folder
    /// (so a sibling that escapes is treated as absent, and the original
    /// file served instead).
    async fn resolve(&self, path: &Path) -> io::Result<PathBuf> {
        // Missing, a loop of links, a file used as a folder...: all 404.
        let real = tokio::fs::canonicalize(path)
            .await
            .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e))?;
        if real.starts_with(self.root.as_path()) {
            Ok(real)
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the path resolves outside the static folder",
            ))
        }
    }

    /// Refuses (PermissionDenied) when `file`'s start holds a private key.
    async fn guard(&self, file: &mut tokio::fs::File, name: &Path) -> io::Result<()> {
        let head = key_guard::read_head(file).await?;
        file.seek(io::SeekFrom::Start(0)).await?;
        if key_guard::holds_private_key(&head) {
            if let Ok(mut g) = self.refused.lock() {
                *g = Some(name.to_path_buf());
            }
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the file holds a private key",
            ));
        }
        Ok(())
    }

    /// Opens `path` (inside the folder, a regular file) and checks it, and,
    /// for a precompressed sibling (`x.br`, `x.gz`), the file `x` it stands
    /// for: the compressed copy of a key must not leave either.
    async fn open_checked(&self, path: PathBuf) -> io::Result<tokio::fs::File> {
        let real = self.resolve(&path).await?;
        let mut file = tokio::fs::File::open(&real).await?;
        if !file.metadata().await?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "not a regular file",
            ));
        }
        self.guard(&mut file, &real).await?;
        if let Some(original) = sibling_of(&path)
            && let Ok(real_original) = self.resolve(&original).await
            && let Ok(mut f) = tokio::fs::File::open(&real_original).await
            && f.metadata().await.is_ok_and(|m| m.is_file())
        {
            self.guard(&mut f, &real_original).await?;
        }
        Ok(file)
    }
}

/// `x` for `x.br` / `x.gz`.
fn sibling_of(path: &Path) -> Option<PathBuf> {
    let ext = path.extension()?.to_str()?;
    SIBLING_EXTENSIONS
        .contains(&ext)
        .then(|| path.with_extension(""))
}

type Boxed<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

impl Backend for Confined {
    type File = OpenFile;
    type Metadata = std::fs::Metadata;
    type OpenFuture = Boxed<OpenFile>;
    type MetadataFuture = Boxed<std::fs::Metadata>;

    fn open(&self, path: PathBuf) -> Self::OpenFuture {
        let this = self.clone();
        Box::pin(async move { this.open_checked(path).await.map(OpenFile) })
    }

    fn metadata(&self, path: PathBuf) -> Self::MetadataFuture {
        let this = self.clone();
        Box::pin(async move {
            let real = this.resolve(&path).await?;
            let meta = tokio::fs::metadata(&real).await?;
            if this.head && meta.is_file() {
                this.open_checked(path).await?;
            }
            Ok(meta)
        })
    }
}

/// A file opened through [`Confined`].
#[derive(Debug)]
pub struct OpenFile(tokio::fs::File);

impl AsyncRead for OpenFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncSeek for OpenFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.0).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.0).poll_complete(cx)
    }
}

impl File for OpenFile {
    type Metadata = std::fs::Metadata;
    type MetadataFuture<'a> =
        Pin<Box<dyn Future<Output = io::Result<std::fs::Metadata>> + Send + 'a>>;

    fn metadata(&self) -> Self::MetadataFuture<'_> {
        Box::pin(self.0.metadata())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_name_their_original() {
        assert_eq!(
            sibling_of(Path::new("/a/app.js.br")),
            Some(PathBuf::from("/a/app.js"))
        );
        assert_eq!(
            sibling_of(Path::new("/a/k.pem.gz")),
            Some(PathBuf::from("/a/k.pem"))
        );
        assert_eq!(sibling_of(Path::new("/a/app.js")), None);
    }

    #[tokio::test]
    async fn escapes_keys_and_compressed_keys_are_refused() {
        let site = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = Arc::new(std::fs::canonicalize(site.path()).unwrap());
        std::fs::write(outside.path().join("s.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(outside.path().join("s.txt"), root.join("link.txt")).unwrap();
        std::fs::write(root.join("ok.txt"), "fine").unwrap();
        let key = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";
        std::fs::write(root.join("k.pem"), key).unwrap();
        std::fs::write(root.join("k.pem.gz"), b"\x1f\x8b compressed").unwrap();
        let fs = Confined::new(root.clone(), false);
        assert!(fs.open(root.join("ok.txt")).await.is_ok());
        let e = fs.open(root.join("link.txt")).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(fs.refused().is_none());
        let e = fs.open(root.join("k.pem.gz")).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(fs.refused(), Some(root.join("k.pem")));
        let head = Confined::new(root.clone(), true);
        let e = head.metadata(root.join("k.pem")).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    }
}
