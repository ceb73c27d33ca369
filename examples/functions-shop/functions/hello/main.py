"""A Python function: def main(event, context) (it may be async too)."""


def main(event, context):
    print(f"hello from request {context['request_id']}")
    return {"hello": event.get("name", "world"), "env": context["env"], "seconds_left": round(context.time_left())}
