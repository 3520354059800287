"""The classes of fstore's one error family, written by concept (base, definitions, data,
network). Import them from ``fstore.errors``, the family's one import path: it imports every
module here, so its code table (``error_class``) knows every code.
"""
