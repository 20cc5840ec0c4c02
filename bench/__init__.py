"""`make bench`: the service's costs against the common Scan + filter way (see ``bench/run.py``)."""
