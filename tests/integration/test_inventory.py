"""Inventory constraints: each is refused with a message naming the field and value, and the
database itself holds the line when validation is skipped."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from inventory.models import NIC, Machine, OSProfile
from tests.conftest import make_machine, make_rack

pytestmark = pytest.mark.django_db


def errors_of(obj) -> dict:
    with pytest.raises(ValidationError) as exc:
        obj.full_clean()
    return exc.value.message_dict


def test_mac_typed_in_any_form_is_stored_canonically():
    machine = make_machine(with_nic=False)
    nic = NIC(machine=machine, mac="AA-BB-CC-DD-EE-10", is_pxe=True)
    nic.full_clean()
    nic.save()
    with connection.cursor() as cursor:
        cursor.execute("SELECT mac FROM inventory_nic WHERE id = %s", [nic.pk])
        assert cursor.fetchone()[0] == "aa:bb:cc:dd:ee:10"
    assert NIC.objects.filter(mac="aabb.ccdd.ee10").get() == nic


def test_malformed_mac_is_refused_naming_field_and_value():
    nic = NIC(machine=make_machine(with_nic=False), mac="aa:bb:cc:dd:ee:zz")
    assert errors_of(nic)["mac"] == [
        "“aa:bb:cc:dd:ee:zz” is not a MAC address: expected six pairs of hex digits such as aa:bb:cc:dd:ee:ff."
    ]


def test_duplicate_mac_in_another_form_is_refused():
    first = make_machine(hostname="web01", with_nic=False)
    NIC.objects.create(machine=first, name="eth0", mac="aa:bb:cc:dd:ee:20", is_pxe=True)
    duplicate = NIC(machine=make_machine(with_nic=False), mac="AA:BB:CC:DD:EE:20")
    assert errors_of(duplicate)["mac"] == ["aa:bb:cc:dd:ee:20 is already web01's eth0."]
    NIC.objects.filter(mac="aa:bb:cc:dd:ee:20").update(name="")
    assert errors_of(duplicate)["mac"] == ["aa:bb:cc:dd:ee:20 is already a NIC of web01."]
    with pytest.raises(IntegrityError, match="nic_mac_unique"), transaction.atomic():
        duplicate.save()


def test_a_machine_has_at_most_one_pxe_nic_in_the_database():
    machine = make_machine()  # has its PXE NIC
    second = NIC(machine=machine, mac="aa:bb:cc:dd:ee:30", is_pxe=True)
    assert "already has a PXE NIC" in errors_of(second)["__all__"][0]
    with pytest.raises(IntegrityError, match="nic_one_pxe_per_machine"), transaction.atomic():
        second.save()
    NIC.objects.create(machine=machine, mac="aa:bb:cc:dd:ee:31", is_pxe=False)  # a second, non-PXE NIC is fine


def test_bad_ip_is_refused_naming_the_value():
    nic = NIC(machine=make_machine(with_nic=False), mac="aa:bb:cc:dd:ee:40", ip="10.0.0.300", prefix_len=24)
    assert errors_of(nic)["ip"] == ["“10.0.0.300” is not a valid IP address."]


def test_gateway_outside_the_subnet_is_refused():
    nic = NIC(
        machine=make_machine(with_nic=False), mac="aa:bb:cc:dd:ee:41", ip="10.0.0.30", prefix_len=24, gateway="10.0.1.1"
    )
    assert errors_of(nic)["gateway"] == ["Gateway 10.0.1.1 is not in 10.0.0.0/24."]


def test_addressing_without_an_ip_is_refused_by_the_database():
    nic = NIC(machine=make_machine(with_nic=False), mac="aa:bb:cc:dd:ee:42", prefix_len=24)
    assert errors_of(nic)["prefix_len"] == ["A prefix length needs an IP address."]
    with pytest.raises(IntegrityError, match="nic_addressing_needs_ip"), transaction.atomic():
        nic.save()


def test_vlan_out_of_range_is_refused_by_the_database():
    nic = NIC(machine=make_machine(with_nic=False), mac="aa:bb:cc:dd:ee:43", vlan=4095)
    with pytest.raises(IntegrityError, match="nic_vlan_range"), transaction.atomic():
        nic.save()


def test_bad_hostname_is_refused_by_validation_and_by_the_database():
    rack = make_rack()
    machine = Machine(hostname="-bad-", rack=rack, position_u=1)
    message = errors_of(machine)["hostname"][0]
    assert message.startswith("“-bad-” is not a valid hostname")
    with pytest.raises(IntegrityError, match="machine_hostname_rfc1123"), transaction.atomic():
        machine.save()


def test_hostname_is_kept_in_lower_case():
    machine = Machine(hostname="Web01.Example.NET", rack=make_rack(), position_u=1)
    machine.full_clean()
    assert machine.hostname == "web01.example.net"


def test_overlapping_machines_are_refused_naming_the_other_machine():
    rack = make_rack()
    make_machine(rack, hostname="big", position_u=10, height_u=4)  # U10-U13
    clash = Machine(hostname="small", rack=rack, position_u=13, height_u=1)
    assert errors_of(clash)["position_u"] == [f"U13 in rack {rack} overlaps big, which occupies U10–U13."]
    one_u = Machine(hostname="tall", rack=rack, position_u=2, height_u=2)
    make_machine(rack, hostname="lab-r1-02", position_u=3)
    assert errors_of(one_u)["position_u"] == [f"U2–U3 in rack {rack} overlaps lab-r1-02, which occupies U3."]
    below = Machine(hostname="below", rack=rack, position_u=8, height_u=2)  # U8-U9: touches, no overlap
    below.full_clean()


def test_overlap_is_refused_by_postgresql_itself():
    rack = make_rack()
    make_machine(rack, hostname="big", position_u=10, height_u=4)
    with pytest.raises(IntegrityError, match="machine_rack_front_no_overlap"), transaction.atomic():
        Machine.objects.create(hostname="sneaky", rack=rack, position_u=12, height_u=2)
    with pytest.raises(IntegrityError, match="machine_rack_rear_no_overlap"), transaction.atomic():
        Machine.objects.create(hostname="sneaky-rear", rack=rack, position_u=12, depth="rear")
    Machine.objects.create(hostname="next-rack-same-u", rack=make_rack(), position_u=12, height_u=2)
    Machine.objects.create(hostname="front-half", rack=rack, position_u=2, depth="front")
    Machine.objects.create(hostname="rear-half", rack=rack, position_u=2, depth="rear")
    with pytest.raises(IntegrityError, match="machine_rack_front_no_overlap"), transaction.atomic():
        Machine.objects.create(hostname="front-again", rack=rack, position_u=2, depth="front")


def test_half_depth_machines_share_units_only_with_the_opposite_face():
    rack = make_rack()
    make_machine(rack, hostname="front-half", position_u=5, depth="front")
    Machine(hostname="rear-half", rack=rack, position_u=5, depth="rear").full_clean()
    same_face = Machine(hostname="front-two", rack=rack, position_u=5, depth="front")
    assert errors_of(same_face)["position_u"] == [
        f"U5 in rack {rack} overlaps front-half, which occupies U5 at the front."
    ]
    full = Machine(hostname="full", rack=rack, position_u=4, height_u=2)
    assert "overlaps front-half" in errors_of(full)["position_u"][0]
    make_machine(rack, hostname="big", position_u=10, height_u=2)
    half_behind_full = Machine(hostname="behind", rack=rack, position_u=11, depth="rear")
    assert errors_of(half_behind_full)["position_u"] == [f"U11 in rack {rack} overlaps big, which occupies U10–U11."]


def test_machine_must_fit_in_its_rack():
    rack = make_rack(height_u=42)
    machine = Machine(hostname="top", rack=rack, position_u=42, height_u=2)
    assert errors_of(machine)["position_u"] == [f"U42–U43 does not fit in rack {rack}, which is 42U high."]
    Machine(hostname="top", rack=rack, position_u=41, height_u=2).full_clean()


def test_rack_and_position_go_together():
    with pytest.raises(IntegrityError, match="machine_rack_and_position_together"), transaction.atomic():
        Machine.objects.create(hostname="floating", rack=make_rack(), position_u=None)


def test_image_sha256_must_be_hex():
    profile = OSProfile(name="img", method="image", kernel="k", initrd="i", image_sha256="xyz")
    assert errors_of(profile)["image_sha256"] == ["“xyz” is not a SHA-256 digest: expected 64 lower-case hex digits."]
    with pytest.raises(IntegrityError, match="osprofile_image_sha256_hex"), transaction.atomic():
        profile.save()


def test_installer_profile_needs_a_template():
    profile = OSProfile(name="deb", method="preseed", kernel="k", initrd="i")
    assert errors_of(profile)["template"] == ["A preseed profile needs its install template."]
