"""The MongoDB operators the data API supports (docstore.py compiles them), with a line each for the
editor's completions and hovers. Standard library only: the language server imports it."""

from __future__ import annotations

FILTER_OPERATORS: dict[str, str] = {
    "$eq": "equal to the value (an array field: equal, or holding an equal element)",
    "$ne": "not equal (a missing field matches)",
    "$gt": "greater than, among values of the same type (numbers with numbers, strings with strings)",
    "$gte": "greater than or equal, among values of the same type",
    "$lt": "less than, among values of the same type",
    "$lte": "less than or equal, among values of the same type",
    "$in": "equal to one of the array's values",
    "$nin": "equal to none of the array's values (a missing field matches)",
    "$exists": "the field is present (true) or absent (false)",
    "$regex": "a string matching the regular expression (with $options: \"i\" ignores case)",
    "$options": "options of $regex: i (ignore case)",
    "$not": "the operator expression inside does not match",
    "$and": "every filter of the array matches",
    "$or": "at least one filter of the array matches",
    "$nor": "no filter of the array matches",
}

UPDATE_OPERATORS: dict[str, str] = {
    "$set": "set fields (dotted paths reach into nested documents)",
    "$unset": "remove fields",
    "$inc": "add to numeric fields (a missing field starts at 0)",
    "$push": "append to array fields",
    "$pull": "remove the matching elements from array fields",
    "$addToSet": "append to array fields unless already present",
}
