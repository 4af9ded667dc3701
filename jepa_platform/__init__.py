"""jepa-platform: self-supervised video representation learning."""
from jepa_platform.version import __version__

__all__ = ["__version__", "load_encoder", "read_embeddings"]


def load_encoder(url: str, key: str = "auto", num_heads: int | None = None, pos_embed: str | None = None):
    """The encoder at `url` (a run, a checkpoint, an official V-JEPA / V-JEPA 2 / 2.1 `.pt` file, a Hugging Face
    V-JEPA 2 folder or a `jepa export`), in eval mode; see `jepa_platform.weights.load.load_encoder`."""
    from jepa_platform.weights.load import load_encoder as load

    return load(url, key, num_heads, pos_embed)


def read_embeddings(url: str, tokens: bool = False, partial: bool = False):
    """The embeddings folder at `url` (written by `jepa embed`) as numpy arrays: paths, labels, pooled vectors
    and, with `tokens`, every token; see `jepa_platform.embed.shards.read_embeddings`."""
    from jepa_platform.embed.shards import read_embeddings as read

    return read(url, tokens, partial)
