"""In-memory data sets, splits, batching, embedded/synthetic tasks, image files (MNIST,
Fashion-MNIST, CIFAR-10), augmentations, synthetic sequence tasks, the character and word
corpora, binarised digits and synthetic audio."""

from jaxnets.data.audio import AudioClips, mu_law_decode, mu_law_encode, synthetic_audio
from jaxnets.data.augment import (
    compose,
    random_flip,
    random_rotation,
    random_shift,
    rotate_images,
    shift_images,
)
from jaxnets.data.binarized import load_binarized_digits
from jaxnets.data.cifar import load_cifar10
from jaxnets.data.dataset import ArrayDataset, Splits, Standardizer, split_sizes, standardize
from jaxnets.data.embedded import (
    load_digits,
    make_circles,
    make_linearly_separable,
    make_polynomial_regression,
    make_two_moons,
    make_xor,
    xor_truth_table,
)
from jaxnets.data.files import CorruptFileError, data_folder
from jaxnets.data.idx import load_mnist, read_idx
from jaxnets.data.images import digits_to_32x32, load_digits_32
from jaxnets.data.sequences import (
    ADDING_BASELINE_MSE,
    ExecutionTask,
    all_binary_sequences,
    copy_task_baseline,
    execute_program,
    generate_program,
    make_adding_problem,
    make_copy_task,
    make_execution_task,
    make_parity,
    most_common_answer_accuracy,
)
from jaxnets.data.text import (
    CharCorpus,
    CharVocab,
    load_char_corpus,
    read_split_files,
    sequence_windows,
    stdlib_root,
    stdlib_source_files,
)
from jaxnets.data.toy2d import TOY2D, rings, toy2d_dataset, two_moons
from jaxnets.data.words import (
    WordCorpus,
    WordVocab,
    context_windows,
    load_word_corpus,
    source_passages,
    tokenize_words,
)

__all__ = [
    "ADDING_BASELINE_MSE",
    "TOY2D",
    "ArrayDataset",
    "AudioClips",
    "CharCorpus",
    "CharVocab",
    "CorruptFileError",
    "ExecutionTask",
    "Splits",
    "Standardizer",
    "WordCorpus",
    "WordVocab",
    "all_binary_sequences",
    "compose",
    "context_windows",
    "copy_task_baseline",
    "data_folder",
    "digits_to_32x32",
    "execute_program",
    "generate_program",
    "load_binarized_digits",
    "load_char_corpus",
    "load_cifar10",
    "load_digits",
    "load_digits_32",
    "load_mnist",
    "load_word_corpus",
    "make_adding_problem",
    "make_circles",
    "make_copy_task",
    "make_execution_task",
    "make_linearly_separable",
    "make_parity",
    "make_polynomial_regression",
    "make_two_moons",
    "make_xor",
    "most_common_answer_accuracy",
    "mu_law_decode",
    "mu_law_encode",
    "random_flip",
    "random_rotation",
    "random_shift",
    "read_idx",
    "read_split_files",
    "rings",
    "rotate_images",
    "sequence_windows",
    "shift_images",
    "source_passages",
    "split_sizes",
    "standardize",
    "stdlib_root",
    "stdlib_source_files",
    "synthetic_audio",
    "tokenize_words",
    "toy2d_dataset",
    "two_moons",
    "xor_truth_table",
]
