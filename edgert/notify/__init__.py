"""Outbound notifications shared by the edge and the cloud: MQTT topics and payloads, Home Assistant discovery,
the MQTT publisher and the signed webhook. Both deployables build their messages here, so they say the same thing."""
