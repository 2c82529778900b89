"""Image augmentations of the DeiT recipe.

host.py         per image, in the data workers: random resized crop box, horizontal flip
randaugment.py  per image, in the data workers: RandAugment (timm's 'rand-m9-mstd0.5-inc1')
batch.py        per batch, on device inside the jitted step from the step's key: normalisation,
                random erasing, Mixup/CutMix with label smoothing (exact on resume, no host time)
"""
