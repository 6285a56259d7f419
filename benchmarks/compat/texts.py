"""Texts of the compatibility harness: what each family encodes, and what its offline tokenizer learns from.

Plain Python with no third-party imports, so the build script can read it inside any reference venv.
Each set has queries and documents with punctuation, one query longer than every family's query length
(32 tokens) and one document that is nothing but punctuation once tokenized ("empty-ish": only the
markers and special tokens survive the skiplist).
"""

from __future__ import annotations

ENGLISH_QUERIES: list[str] = [
    "what causes tides?",
    "How do vaccines train the immune system to recognise a virus?",
    "effects of caffeine on sleep quality",
    "Is the Great Wall of China visible from space, or is that a myth?",
    "python: sort a list of dicts by key (stable?)",
    "who wrote 'Pride and Prejudice' -- and when?",
    "best way to store late-interaction token vectors on disk, compressed, with fast MaxSim search over "
    "millions of documents, exact re-ranking of the top candidates, incremental updates, deletions, "
    "metadata filters, and a memory budget below one byte per dimension for every token of every passage",
    "mitochondria; ATP & cellular respiration!",
]

ENGLISH_DOCUMENTS: list[str] = [
    "Tides are caused by the gravitational pull of the Moon and, to a lesser degree, the Sun on Earth's oceans.",
    "Vaccines expose the immune system to a harmless piece of a pathogen, so that memory B and T cells "
    "respond quickly when the real virus appears.",
    "Caffeine blocks adenosine receptors; taken late in the day it delays sleep onset and reduces deep sleep.",
    "The Great Wall is long but narrow: astronauts report it is not visible to the naked eye from orbit.",
    "Use sorted(items, key=lambda d: d['name']); Python's sort is stable, so equal keys keep their order.",
    "Jane Austen published Pride and Prejudice in 1813, after revising an earlier draft called First Impressions.",
    "ColBERT stores one vector per token. PLAID compresses them with centroids and residuals (1, 2 or 4 bits), "
    "then scores candidates with MaxSim: for every query token, the best matching document token, summed. "
    "An index of millions of passages fits in memory this way, and the exact scores of the top candidates "
    "are recomputed from the decompressed vectors before the final ranking is returned to the caller.",
    "Mitochondria produce ATP through oxidative phosphorylation, the last stage of cellular respiration.",
    "!!! ... ???",
    "Bananas are berries, botanically speaking; strawberries are not.",
]

MULTILINGUAL_QUERIES: list[str] = [
    "what causes tides?",
    "Comment les vaccins entraînent-ils le système immunitaire ?",
    "Wie wirkt Koffein auf den Schlaf?",
    "¿Quién escribió Don Quijote?",
    "Что такое митохондрии?",
    "长城从太空能看到吗？",
    "best way to store late-interaction token vectors on disk, compressed, with fast MaxSim search over "
    "millions of documents, exact re-ranking of the top candidates, incremental updates and deletions",
    "python: sort a list of dicts by key (stable?)",
]

MULTILINGUAL_DOCUMENTS: list[str] = [
    "Tides are caused by the gravitational pull of the Moon and the Sun on Earth's oceans.",
    "Les vaccins exposent le système immunitaire à un fragment inoffensif d'un agent pathogène.",
    "Koffein blockiert Adenosinrezeptoren; spät am Tag getrunken, verzögert es das Einschlafen.",
    "Miguel de Cervantes escribió Don Quijote de la Mancha, publicado en 1605 y 1615.",
    "Митохондрии производят АТФ в процессе клеточного дыхания.",
    "长城很长但很窄，宇航员说从轨道上用肉眼看不到它。",
    "Use sorted(items, key=lambda d: d['name']); Python's sort is stable.",
    "ColBERT stores one vector per token, and PLAID compresses them with centroids and residuals.",
    "!!! ... ???",
    "Bananas are berries; strawberries are not.",
]

JAPANESE_QUERIES: list[str] = [
    "潮の満ち引きの原因は何ですか？",
    "ワクチンはどのように免疫を作りますか。",
    "カフェインは睡眠にどんな影響がありますか？",
    "万里の長城は宇宙から見えますか？",
    "東京タワーの高さは？",
    "「源氏物語」を書いたのは誰？",
    "ディスクに圧縮したトークンベクトルを保存し、何百万もの文書に対して高速な検索を行い、上位の候補を正確に"
    "再順位付けし、追加と削除にも対応する最良の方法は何でしょうか、メモリの予算はどのくらい必要ですか",
    "ミトコンドリアとATPの関係は？",
]

JAPANESE_DOCUMENTS: list[str] = [
    "潮の満ち引きは、主に月の引力によって起こります。太陽の影響もあります。",
    "ワクチンは病原体の無害な一部を体に示し、免疫の記憶を作ります。",
    "カフェインはアデノシン受容体を妨げ、寝つきを遅らせます。",
    "万里の長城は長いが幅が狭く、軌道から肉眼では見えません。",
    "東京タワーの高さは333メートルで、1958年に完成しました。",
    "『源氏物語』は紫式部によって平安時代に書かれました。",
    "ColBERTはトークンごとにベクトルを保存し、PLAIDはそれを圧縮します。",
    "ミトコンドリアは細胞呼吸によってATPを作ります。",
    "！？。、…",
    "バナナは植物学的にはベリーです。",
]

# Extra text for the offline-trained tokenizers, so their vocabularies are not just the test texts.
_EXTRA_ENGLISH = """
The quick brown fox jumps over the lazy dog. A retrieval system ranks documents for a query; a late-interaction
model keeps one embedding per token and compares every query token with every document token. Scores are summed
over the query tokens. Models are trained on pairs of questions and passages, with hard negatives mined from an
earlier model, and distilled from a cross-encoder that reads the question and the passage together. Search
engines have used inverted indexes for decades: each term points to the documents that contain it, with counts
and positions. Dense retrieval replaces terms by vectors, and approximate nearest-neighbour search finds the
closest vectors quickly. Product quantization, inverted files and graphs such as HNSW trade a little accuracy for
a lot of speed. The weather today is sunny with a light breeze from the west; tomorrow brings rain in the
afternoon and cooler temperatures at night. History, science, geography, medicine, cooking, sport, music and
programming questions are all common in open-domain benchmarks such as MS MARCO, Natural Questions and BEIR.
"""

_EXTRA_MULTILINGUAL = """
Le renard brun rapide saute par-dessus le chien paresseux. La recherche d'information classe des documents.
Der schnelle braune Fuchs springt über den faulen Hund. Ein Suchsystem ordnet Dokumente nach ihrer Relevanz.
El rápido zorro marrón salta sobre el perro perezoso. Un sistema de búsqueda ordena los documentos.
Быстрая коричневая лиса прыгает через ленивую собаку. Поисковая система ранжирует документы по запросу.
敏捷的棕色狐狸跳过了懒狗。检索系统根据查询对文档进行排序。每个词都有一个向量。
素早い茶色の狐が怠け者の犬を飛び越える。検索システムは文書を順位付けします。
"""

_EXTRA_JAPANESE = """
素早い茶色の狐が怠け者の犬を飛び越えます。検索システムは、質問に対して文書を順位付けします。
遅延相互作用モデルは、トークンごとに一つの埋め込みを持ち、質問のすべてのトークンを文書のすべてのトークンと比べます。
点数は質問のトークンについて足し合わされます。モデルは質問と文章の組で学習されます。
今日の天気は晴れで、西から弱い風が吹いています。明日の午後は雨が降り、夜は涼しくなるでしょう。
日本の首都は東京です。富士山は日本で一番高い山で、高さは三千七百七十六メートルです。
歴史、科学、地理、医学、料理、スポーツ、音楽、プログラミングの質問がよく使われます。
私は毎朝コーヒーを飲みます。図書館で本を読むのが好きです。駅まで歩いて十分かかります。
"""


def english_corpus() -> list[str]:
    """Lines the English tokenizers (WordPiece for BERT, byte-level BPE for ModernBERT) are trained on."""
    return [*ENGLISH_QUERIES, *ENGLISH_DOCUMENTS, *_EXTRA_ENGLISH.strip().splitlines()]


def multilingual_corpus() -> list[str]:
    """Lines the XLM-RoBERTa-style Unigram tokenizer is trained on."""
    return [
        *english_corpus(),
        *MULTILINGUAL_QUERIES,
        *MULTILINGUAL_DOCUMENTS,
        *_EXTRA_MULTILINGUAL.strip().splitlines(),
    ]


def japanese_corpus() -> list[str]:
    """Lines the Japanese WordPiece vocabulary is built from (after MeCab word splitting)."""
    return [*JAPANESE_QUERIES, *JAPANESE_DOCUMENTS, *_EXTRA_JAPANESE.strip().splitlines(), *english_corpus()]
