// Shared by the screen-space line programs (edges.glsl, paths.glsl).

// Clip a segment to the near plane (z >= -w) so an end behind the eye does not flip over.
void clip_near(inout vec4 a, vec4 b) {
    float da = a.z + a.w;
    float db = b.z + b.w;
    if (da < 0.0) {
        a = mix(a, b, da / (da - db));
    }
}
