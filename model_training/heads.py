"""Classifier heads on the backbone's feature map, as named Keras layers the export can describe.

``paper``: Flatten -> Dense 512 relu -> Dense 256 relu -> Dense 2 softmax.
``gap_linear``: GlobalAveragePooling -> Dense 2 softmax (the linear probe; fitted by logistic regression).
``gap_dense``: GlobalAveragePooling -> Dropout -> Dense ``hidden`` relu -> Dropout -> Dense 2 softmax.
``flatten_dense``: Flatten -> Dropout -> Dense ``hidden`` relu (L2) -> Dropout -> Dense 2 softmax: keeps
where in the image a feature is (as the paper's head) with far fewer weights.
The same function builds the head on the full model and on cached features,
so trained weights move between them by layer name.
"""

from __future__ import annotations

from typing import Any

HEADS = ("paper", "gap_linear", "gap_dense", "flatten_dense")
#: VGG19's paper head sits after block5_pool; the Grad-CAM layer is block5_conv4.


def apply_head(x: Any, kind: str, *, hidden: int = 128, dropout: float = 0.3, l2: float = 1e-4,
               pre_pool: bool = False, pooled_input: bool = False, seed: int = 0) -> Any:
    """Apply the head's layers to tensor ``x`` (the Grad-CAM feature map); returns the softmax output.

    ``pooled_input``: ``x`` is already globally average-pooled (training on cached pooled features);
    the ``head_gap`` layer is then left out (it has no weights).
    """
    import keras
    from keras import layers

    if kind not in HEADS:
        raise ValueError(f"head must be one of {HEADS}. Received: head={kind!r}")
    if pre_pool:  # VGG19: the paper's head sits on block5_pool, after the Grad-CAM layer block5_conv4
        x = layers.MaxPooling2D(2, name="head_pool")(x)
    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    init = keras.initializers.GlorotUniform(seed=seed)
    if kind == "paper":
        x = layers.Flatten(name="head_flatten")(x)
        x = layers.Dense(512, activation="relu", name="head_dense1", kernel_initializer=init)(x)
        x = layers.Dense(256, activation="relu", name="head_dense2",
                         kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1))(x)
    elif kind == "flatten_dense":
        x = layers.Flatten(name="head_flatten")(x)
        x = layers.Dropout(dropout, seed=seed, name="head_dropout1")(x)
        x = layers.Dense(hidden, activation="relu", kernel_regularizer=reg, name="head_dense1",
                         kernel_initializer=init)(x)
        x = layers.Dropout(dropout, seed=seed + 1, name="head_dropout2")(x)
    elif kind == "gap_linear":
        if not pooled_input:
            x = layers.GlobalAveragePooling2D(name="head_gap")(x)
    else:
        if not pooled_input:
            x = layers.GlobalAveragePooling2D(name="head_gap")(x)
        x = layers.Dropout(dropout, seed=seed, name="head_dropout1")(x)
        x = layers.Dense(hidden, activation="relu", kernel_regularizer=reg, name="head_dense1",
                         kernel_initializer=init)(x)
        x = layers.Dropout(dropout, seed=seed + 1, name="head_dropout2")(x)
    return layers.Dense(2, activation="softmax", kernel_regularizer=reg if kind != "paper" else None,
                        kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 2),
                        name="head_logits")(x)


def needs_pre_pool(architecture: str, head: str) -> bool:
    """VGG19's flatten heads sit on block5_pool (one 2x2 max pool after the Grad-CAM layer block5_conv4)."""
    return architecture == "vgg19" and head in ("paper", "flatten_dense")


def copy_weights_by_name(src: Any, dst: Any) -> None:
    """Copy the weights of every layer of ``src`` that has some into ``dst``'s layer of the same name
    (the head's ``head_*`` layers and, for a fine-tuned model, the backbone layers it trained)."""
    for layer in src.layers:
        w = layer.get_weights()
        if w:
            dst.get_layer(layer.name).set_weights(w)
