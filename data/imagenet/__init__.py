"""ImageNet-1K without TensorFlow: readers (folder.py: the train/<wnid>/ layout; tars.py: the
official ILSVRC2012 tars; tfds_source.py: a TFDS imagenet2012 in array_record), decode.py
(PIL, reduced-size JPEG decoding), pipeline.py (grain train/eval pipelines), convert.py (tars
or folders -> array_record for tfds.data_source), quick.py (the offline digits dataset)."""
