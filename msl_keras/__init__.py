"""msl_keras: Keras 3 reproduction of the multi-stage LSTM for action anticipation.

Aliakbarian, Saleh, Salzmann, Fernando, Petersson, Andersson. "Encouraging LSTMs to
Anticipate Actions Very Early", ICCV 2017. TensorFlow backend only: the package uses
TensorFlow directly where Keras has no public API (`tf.data`, `tf.function`,
`tf.distribute`, custom gradients).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # before keras is imported
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
